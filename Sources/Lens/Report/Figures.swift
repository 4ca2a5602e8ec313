import Analysis
import Foundation
import Render

/// The value range of an axis or colour scale.
public enum AxisRange: Equatable {
    /// A tidy range around the data (the default: differences show).
    case auto
    /// Fixed by what the quantity can be (attention: 0 to the largest possible mean distance, 0
    /// to ln(patches); CKA: 0 to 1), so that two figures compare side by side.
    case geometry
    case fixed(Double, Double)
}
/// How figures are drawn: the analysing commands and `vitlens plot` share it.
public struct FigureStyle {
    public var scale = 1.0
    /// The heatmap's colour range ends; nil: from the data.
    public var vmin: Double?
    public var vmax: Double?
    /// The attention figures' y range.
    public var ylim: AxisRange
    public var title: String?
    public init(
        scale: Double = 1, vmin: Double? = nil, vmax: Double? = nil, ylim: AxisRange = .auto, title: String? = nil) {
        self.scale = scale; self.vmin = vmin; self.vmax = vmax; self.ylim = ylim; self.title = title
    }
}
/// A tidy range holding every value: the data's extent padded by 5% and widened to whole steps
/// of the axis's tick spacing; never below 0 for data that is not.
public func tidyRange(_ values: [Double]) -> (Double, Double) {
    let v = values.filter(\.isFinite)
    guard var lo = v.min(), var hi = v.max() else { return (0, 1) }
    let pad = hi > lo ? 0.05 * (hi - lo) : max(abs(hi) * 0.05, 1e-3)
    let nonNegative = lo >= 0
    lo -= pad
    hi += pad
    let ticks = niceTicks(lo, hi, maxCount: 6)
    let step = ticks.count > 1 ? ticks[1] - ticks[0] : (hi - lo)
    lo = (lo / step).rounded(.down) * step
    hi = (hi / step).rounded(.up) * step
    return (nonNegative ? max(0, lo) : lo, hi)
}
/// Figures and index.html, drawn from a typed result in memory — by the analysing commands
/// right after computing it, and by `vitlens plot` after reading it, with the same code.
enum Drawing {
    /// PNG and SVG of one figure. Without a font (fonts-dejavu-core missing) the PNG is left out
    /// with a warning rather than drawn without its text; the SVG names its fonts and needs none.
    static func write(
        _ fig: Figure, _ base: String, out: OutputDirectory, style: FigureStyle, _ observer: RunObserver) throws -> [
        String] {
        try out.write(base + ".svg", fig.svg())
        guard Font.shared != nil else {
            warnNoFont(observer)
            return [base + ".svg"]
        }
        try out.write(base + ".png", bytes: fig.raster(scale: style.scale).png())
        return [base + ".png", base + ".svg"]
    }

    nonisolated(unsafe) static var warned = false
    static func warnNoFont(_ observer: RunObserver) {
        guard !warned else { return }
        warned = true
        let reason = Font.defaultError.map { "\($0)" } ?? "no font"
        observer.warning("\(reason); PNG figures skipped (SVG written), `vitlens plot DIR` redraws them")
    }

    /// The page section every report ends with: definitions, models, images, run.
    static func runSection(_ page: inout HTMLPage, _ json: JSONValue) {
        guard case let .object(o) = json, !o.isEmpty else { return }
        if let defs = json[path: "setup", "definitions"] {
            page.add(.keyValues(caption: "Definitions", defs.flattened())) }
        var models: [(String, String)] = []
        for key in ["model", "model_a", "model_b"] {
            if let m = json[path: "setup", key] { models += m.flattened(prefix: key) }
        }
        if let models2 = json[path: "setup", "models"]?.arrayValue {
            for (i, m) in models2.enumerated() { models += m.flattened(prefix: "model \(i + 1)") }
        }
        if !models.isEmpty { page.add(.keyValues(caption: "Models", models)) }
        if let im = json[path: "setup", "images"] {
            page.add(.keyValues(caption: "Images", im.flattened().filter { $0.0 != "paths" }))
        }
        var run: [(String, String)] = []
        for k in ["vitlens_version", "command_line", "images_used", "minibatches_used"] {
            if let v = json[k] { run.append((k, v.stringValue ?? v.render())) }
        }
        page.add(.keyValues(caption: "Run", run))
    }
}
