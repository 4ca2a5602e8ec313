import Foundation

/// The five numbers and fliers of one box, as matplotlib's boxplot draws it.
public struct BoxSummary: Sendable {
    public var q1, median, q3, whiskerLow, whiskerHigh: Double
    public var outliers: [Double]
    public init(
        q1: Double, median: Double, q3: Double, whiskerLow: Double, whiskerHigh: Double, outliers: [Double] = []) {
        self.q1 = q1; self.median = median; self.q3 = q3
        self.whiskerLow = whiskerLow; self.whiskerHigh = whiskerHigh; self.outliers = outliers
    }
}

/// One model in a box chart: a box per x position, its points (heads) and its mean line.
public struct BoxSeries {
    public var name: String
    public var color: Color
    public var boxes: [BoxSummary]
    /// points[x]: the values drawn as dots beside box x (one per head).
    public var points: [[Double]]
    public var means: [Double]
    public init(name: String, color: Color, boxes: [BoxSummary], points: [[Double]], means: [Double]) {
        self.name = name; self.color = color; self.boxes = boxes; self.points = points; self.means = means
    }
}

/// Colours for models: matplotlib's tab10 blue, orange, green, red, purple.
public let seriesColors: [Color] = [
    Color(hex: 0x1f77b4), Color(hex: 0xff7f0e), Color(hex: 0x2ca02c), Color(hex: 0xd62728), Color(hex: 0x9467bd)]

func darker(_ c: Color, _ f: Double = 0.65) -> Color {
    Color(UInt8(Double(c.r) * f), UInt8(Double(c.g) * f), UInt8(Double(c.b) * f))
}

func lighter(_ c: Color, _ f: Double = 0.75) -> Color {
    func m(_ v: UInt8) -> UInt8 { UInt8(Double(v) + (255 - Double(v)) * f) }
    return Color(m(c.r), m(c.g), m(c.b))
}

/// `s`, shortened with an ellipsis in the middle until it fits `width` pixels.
func fitted(_ s: String, width: Double, size: Double) -> String {
    guard textWidth(s, size: size) > width else { return s }
    var chars = Array(s)
    while chars.count > 4 {
        chars.remove(at: chars.count / 2)
        let t = String(chars.prefix(chars.count / 2)) + "…" + String(chars.suffix(chars.count - chars.count / 2))
        if textWidth(t, size: size) <= width { return t }
    }
    return String(chars)
}

/// Labels shortened to fit `width`, kept apart: where two different labels would shorten to the
/// same text, the part they share at the start gives way first ("…_mae_400e test"), then the
/// middle; labels that are the same stay the same.
public func uniquelyFitted(_ labels: [String], width: Double, size: Double) -> [String] {
    var out = labels.map { fitted($0, width: width, size: size) }
    for i in out.indices {
        let clash = out.indices.filter { $0 != i && out[$0] == out[i] && labels[$0] != labels[i] }
        guard !clash.isEmpty else { continue }
        for k in [i] + clash {
            // Drop the prefix shared with any other clashing label, then fit what is left.
            let shared = ([i] + clash).filter { $0 != k }.map { commonPrefixCount(labels[k], labels[$0]) }.max() ?? 0
            let keep = max(0, shared - 2)
            var t = keep > 0 ? "…" + String(labels[k].dropFirst(keep)) : labels[k]
            while textWidth(t, size: size) > width && t.count > 2 { t = "…" + String(t.dropFirst(2)) }
            out[k] = t
        }
    }
    return out
}

func commonPrefixCount(_ a: String, _ b: String) -> Int { zip(a, b).prefix { $0 == $1 }.count }

/// Shared frame of the x/y charts: the plot rectangle, y grid and ticks, titles.
struct Frame {
    static let left = 80.0, top = 78.0, right = 610.0, bottom = 528.0
    let yLo, yHi: Double

    func y(_ v: Double) -> Double {
        Frame.bottom - (Frame.bottom - Frame.top) * (min(max(v, yLo), yHi) - yLo) / (yHi - yLo) }

    /// `yTicks`: where the y ticks go (default: nice round values).
    func draw(_ fig: inout Figure, title: String, subtitle: String, xTitle: String, yTitle: String,
              yTicks: [Double]? = nil) {
        fig.fittedText(title, (Frame.left + Frame.right) / 2, 34, size: 17, anchor: .middle)
        fig.fittedText(
            subtitle, (Frame.left + Frame.right) / 2, 57, size: 12.5, color: Color(hex: 0x555555), anchor: .middle)
        let ticks = yTicks ?? niceTicks(yLo, yHi, maxCount: 7)
        let step = ticks.count > 1 ? ticks[1] - ticks[0] : 1
        for t in ticks {
            let yy = y(t)
            fig.rect(Frame.left, yy - 0.5, Frame.right, yy + 0.5, fill: .grid)
            fig.rect(Frame.left - 5, yy - 0.5, Frame.left, yy + 0.5, fill: .axis)
            fig.text(tickLabel(t, step: step), Frame.left - 9, yy + 4.5, size: 12.5, anchor: .end)
        }
        fig.fittedText(
            xTitle, (Frame.left + Frame.right) / 2, Frame.bottom + 48, size: 14, maxWidth: Frame.right - Frame.left,
            anchor: .middle)
        fig.fittedText(
            yTitle, Frame.left - 50, (Frame.top + Frame.bottom) / 2, size: 14, maxWidth: Frame.bottom - Frame.top + 40,
            anchor: .middle, rotated: true)
    }

    func xTicks(_ fig: inout Figure, labels: [String], x: (Int) -> Double) {
        let every = labels.count > 16 ? 3 : 1
        for (i, l) in labels.enumerated() where i % every == 0 || i == labels.count - 1 && every == 1 {
            let xx = x(i)
            fig.rect(xx - 0.5, Frame.bottom, xx + 0.5, Frame.bottom + 5, fill: .axis)
            fig.text(l, xx, Frame.bottom + 21, size: 12.5, anchor: .middle)
        }
    }

    static func legend(_ fig: inout Figure, _ entries: [(String, (inout Figure, Double, Double) -> Void)]) {
        var y = top + 10
        let labels = uniquelyFitted(entries.map(\.0), width: 820 - right - 52, size: 12.5)
        for ((_, glyph), label) in zip(entries, labels) {
            glyph(&fig, right + 28, y)
            fig.text(label, right + 46, y + 4.5, size: 12.5)
            y += 22
        }
    }
}

/// Box plots per layer (over heads, or heads × images), heads as points, the mean per layer as
/// a line with markers; several series side by side in their own colours (docs/reference.md, "Figures"; `--compare`).
public struct BoxChart {
    public var series: [BoxSeries]
    public var xLabels: [String]
    public var xTitle = "layer"
    public var yTitle: String
    public var yRange: (Double, Double)
    public var title: String
    public var subtitle: String

    public init(
        series: [BoxSeries], xLabels: [String], yTitle: String, yRange: (Double, Double), title: String,
        subtitle: String) {
        self.series = series; self.xLabels = xLabels; self.yTitle = yTitle; self.yRange = yRange
        self.title = title; self.subtitle = subtitle
    }

    var slot: Double { (Frame.right - Frame.left) / Double(max(1, xLabels.count)) }
    /// Centre of series s's box at position i.
    public func boxCenter(_ i: Int, series s: Int) -> Double {
        let n = Double(series.count)
        let offset = series.count == 1 ? 0 : (Double(s) - (n - 1) / 2) * 0.8 / n
        return Frame.left + slot * (Double(i) + 0.5 + offset)
    }

    /// The figure y of a value (for tests: where a box edge must be drawn).
    public func yPixel(_ v: Double) -> Double { Frame(yLo: yRange.0, yHi: yRange.1).y(v) }

    public func figure() -> Figure {
        var fig = Figure(width: 820, height: 600, title: title)
        let frame = Frame(yLo: yRange.0, yHi: yRange.1)
        frame.draw(&fig, title: title, subtitle: subtitle, xTitle: xTitle, yTitle: yTitle)
        let boxW = slot * min(0.55, 0.7 / Double(series.count))
        for (s, ser) in series.enumerated() {
            let edge = darker(ser.color, 0.8), fill = lighter(ser.color, 0.72)
            for (i, b) in ser.boxes.enumerated() where i < xLabels.count {
                let cx = boxCenter(i, series: s), h = boxW / 2
                fig.rect(cx, frame.y(b.whiskerHigh), cx + 1, frame.y(b.q3), fill: edge)
                fig.rect(cx, frame.y(b.q1), cx + 1, frame.y(b.whiskerLow), fill: edge)
                fig.rect(
                    cx - h / 2, frame.y(b.whiskerHigh) - 0.5, cx + h / 2 + 1, frame.y(b.whiskerHigh) + 0.5, fill: edge)
                fig.rect(
                    cx - h / 2, frame.y(b.whiskerLow) - 0.5, cx + h / 2 + 1, frame.y(b.whiskerLow) + 0.5, fill: edge)
                fig.rect(cx - h, frame.y(b.q3), cx + h, frame.y(b.q1), fill: fill, stroke: edge, lineWidth: 1)
                fig.rect(cx - h, frame.y(b.median) - 1, cx + h, frame.y(b.median) + 1, fill: darker(ser.color, 0.55))
                for o in b.outliers { fig.circle(cx, frame.y(o), r: 3, stroke: edge, lineWidth: 1) }
            }
            // Heads as points, spread across the box in head order.
            for (i, pts) in ser.points.enumerated() where i < xLabels.count {
                let cx = boxCenter(i, series: s)
                for (k, v) in pts.enumerated() where v.isFinite {
                    let dx = pts.count == 1 ? 0 : (Double(k) / Double(pts.count - 1) - 0.5) * boxW * 0.7
                    fig.circle(cx + dx, frame.y(v), r: 2.3, fill: ser.color, stroke: .white, lineWidth: 0.6)
                }
            }
            let pts = ser.means.enumerated().filter { $0.element.isFinite && $0.offset < xLabels.count }
                .map { (boxCenter($0.offset, series: s), frame.y($0.element)) }
            fig.line(pts, darker(ser.color, 0.55), width: 1.8)
            for p in pts { fig.rect(p.0 - 3.5, p.1 - 3.5, p.0 + 3.5, p.1 + 3.5, fill: darker(ser.color, 0.55)) }
        }
        fig.rect(Frame.left, Frame.top, Frame.right, Frame.bottom, stroke: .axis, lineWidth: 1)
        frame.xTicks(&fig, labels: xLabels) { Frame.left + slot * (Double($0) + 0.5) }

        var legend: [(String, (inout Figure, Double, Double) -> Void)] = []
        for ser in series {
            let c = ser.color
            if series.count > 1 {
                legend.append(
                (ser.name,
                { f, x, y in f.rect(x - 6, y - 6, x + 6, y + 6, fill: lighter(c, 0.72), stroke: darker(c, 0.8)) })) }
        }
        let c0 = series.first?.color ?? seriesColors[0]
        legend.append(
            ("box: q1–q3, median",
            { f, x, y in f.rect(x - 6, y - 6, x + 6, y + 6, fill: lighter(c0, 0.72), stroke: darker(c0, 0.8)); f.rect(
            x - 6, y - 1, x + 6, y + 1, fill: darker(c0, 0.55)) }))
        legend.append(("whiskers: 1.5·IQR", { f, x, y in f.rect(x, y - 7, x + 1, y + 7, fill: darker(c0, 0.8)) }))
        legend.append(("head", { f, x, y in f.circle(x, y, r: 2.5, fill: c0, stroke: .white, lineWidth: 0.6) }))
        legend.append(
            ("mean over heads",
            { f, x, y in f.line([(x - 9, y), (x + 9, y)], darker(c0, 0.55), width: 1.8); f.rect(
            x - 3.5, y - 3.5, x + 3.5, y + 3.5, fill: darker(c0, 0.55)) }))
        legend.append(("outlier", { f, x, y in f.circle(x, y, r: 3, stroke: darker(c0, 0.8), lineWidth: 1) }))
        Frame.legend(&fig, legend)
        return fig
    }
}

/// One curve of a line chart.
public struct LineSeries {
    public var name: String
    public var color: Color
    public var xs: [Double]
    public var ys: [Double]
    public var dashed: Bool
    /// Error bars: (low, high) at each point, or nil.
    public var errors: [(Double, Double)]?
    public init(
        name: String, color: Color, xs: [Double], ys: [Double], dashed: Bool = false,
        errors: [(Double, Double)]? = nil) {
        self.name = name; self.color = color; self.xs = xs; self.ys = ys; self.dashed = dashed; self.errors = errors
    }
}

/// Curves over integer x positions (the probe: accuracy against layers kept).
public struct LineChart {
    public var series: [LineSeries]
    public var xLabels: [String]
    public var xTitle: String
    public var yTitle: String
    public var yRange: (Double, Double)
    public var title: String
    public var subtitle: String
    /// A dotted horizontal reference (e.g. chance accuracy) with its legend label.
    public var reference: (Double, String)?
    /// A dotted grey guide through (x position, y) points with its legend label (best_match: y = x).
    public var guide: ([(Double, Double)], String)?
    /// Where the y ticks go (layer numbers); nil: nice round values.
    public var yTicks: [Double]?

    public init(series: [LineSeries], xLabels: [String], xTitle: String, yTitle: String, yRange: (Double, Double),
                title: String, subtitle: String, reference: (Double, String)? = nil) {
        self.series = series; self.xLabels = xLabels; self.xTitle = xTitle; self.yTitle = yTitle
        self.yRange = yRange; self.title = title; self.subtitle = subtitle; self.reference = reference
    }

    /// x position i (0-based index into xLabels) in figure pixels.
    public func xPixel(_ i: Double) -> Double {
        let n = Double(max(1, xLabels.count))
        return Frame.left + (Frame.right - Frame.left) * (i + 0.5) / n
    }

    public func yPixel(_ v: Double) -> Double { Frame(yLo: yRange.0, yHi: yRange.1).y(v) }

    public func figure() -> Figure {
        var fig = Figure(width: 820, height: 600, title: title)
        let frame = Frame(yLo: yRange.0, yHi: yRange.1)
        frame.draw(&fig, title: title, subtitle: subtitle, xTitle: xTitle, yTitle: yTitle, yTicks: yTicks)
        if let (r, _) = reference {
            fig.line([(Frame.left, frame.y(r)), (Frame.right, frame.y(r))], Color(hex: 0x888888), width: 1.2, dash: 2)
        }
        if let (points, _) = guide {
            fig.line(points.map { (xPixel($0.0), frame.y($0.1)) }, Color(hex: 0x888888), width: 1.2, dash: 2)
        }
        // Error bars of several series side by side around their x (dodged 7 px apart).
        let withErrors = series.indices.filter { series[$0].errors != nil }
        for (k, s) in series.enumerated() {
            let dodge = (Double(withErrors.firstIndex(of: k) ?? 0) - Double(withErrors.count - 1) / 2) * 7
            for (x, e) in zip(s.xs, s.errors ?? []) where e.0.isFinite && e.1.isFinite {
                let px = xPixel(x) + dodge, y0 = frame.y(e.0), y1 = frame.y(e.1)
                fig.line([(px, y0), (px, y1)], s.color, width: 1.2)
                fig.line([(px - 3, y0), (px + 3, y0)], s.color, width: 1.2)
                fig.line([(px - 3, y1), (px + 3, y1)], s.color, width: 1.2)
            }
            let pts = zip(s.xs, s.ys).filter { $0.1.isFinite }.map { (xPixel($0.0), frame.y($0.1)) }
            fig.line(pts, s.color, width: 2, dash: s.dashed ? 6 : nil)
            for p in pts {
                if s.dashed { fig.circle(p.0, p.1, r: 3.6, fill: .white, stroke: s.color, lineWidth: 1.6) }
                else { fig.circle(p.0, p.1, r: 3.6, fill: s.color) }
            }
        }
        fig.rect(Frame.left, Frame.top, Frame.right, Frame.bottom, stroke: .axis, lineWidth: 1)
        frame.xTicks(&fig, labels: xLabels) { xPixel(Double($0)) }
        var legend: [(String, (inout Figure, Double, Double) -> Void)] = series.map { s in
            (s.name, { f, x, y in
                f.line([(x - 11, y), (x + 11, y)], s.color, width: 2, dash: s.dashed ? 4 : nil)
                if s.dashed { f.circle(x, y, r: 3.6, fill: .white, stroke: s.color, lineWidth: 1.6) } else {
                    f.circle(x, y, r: 3.6, fill: s.color) }
            })
        }
        for label in [reference?.1, guide?.1].compactMap({ $0 }) {
            legend.append(
                (label, { f, x, y in f.line([(x - 11, y), (x + 11, y)], Color(hex: 0x888888), width: 1.2, dash: 2) }))
        }
        Frame.legend(&fig, legend)
        return fig
    }
}
