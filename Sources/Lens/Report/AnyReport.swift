import Analysis
import Foundation
import Render

/// Any report `vitlens plot` can redraw, read from its folder.
public enum AnyReport {
    case cka(CKAResult)
    case ckaPairs(CKAPairs)
    case attention(AttentionResult)
    case probe(ProbeResult)

    /// `compare`: a second attention report folder to overlay.
    public init(reading dir: String, compare: String? = nil) throws {
        let src = ReportFolder(dir: dir)
        if src.exists("cka.csv") {
            let header = (try? String(contentsOfFile: src.path("cka.csv"), encoding: .utf8))?.prefix(
                while: { $0 != "\n" }) ?? ""
            self = header.hasPrefix("model_a,") ? .ckaPairs(try CKAPairs(reading: dir))
                : .cka(try CKAResult(reading: dir))
        }
        else if src.exists("attention.csv") {
            self = .attention(try AttentionResult(reading: dir, compareWith: compare)) }
        else if src.exists("probe.csv") { self = .probe(try ProbeResult(reading: dir)) }
        else if src.exists("maps.json") {
            throw ReportError.mapsNeedImages(path: dir)
        }
        else { throw ReportError.notAReport(path: dir) }
    }

    public func draw(into out: OutputDirectory, style: FigureStyle, _ observer: RunObserver) throws -> [String] {
        switch self {
        case let .cka(r): return try r.draw(into: out, style: style, observer)
        case let .ckaPairs(r): return try r.draw(into: out, style: style, observer)
        case let .attention(r): return try r.draw(into: out, style: style, observer)
        case let .probe(r): return try r.draw(into: out, style: style, observer)
        }
    }
}
