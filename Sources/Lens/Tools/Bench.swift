import Engine
import Foundation
import Render
import Train
import VitLensCore

/// Speed measurements (`vitlens bench`): medians after a warm-up.
public enum Bench {
    public struct Forward {
        public var imagesPerSecond: Double, gflops: Double, medianSeconds: Double
        public var sgemmPeakGflops: Double, loadMs: Double
        /// Fractions of the forward pass's time per phase, when profiled.
        public var profile: [(String, Double)]?
    }

    public struct Training {
        public var imagesPerSecond: Double, medianSeconds: Double
        /// Each phase's fraction of the step (with `profile`).
        public var profile: [(String, Double)]?
    }

    /// Checkpoint load (map, parse, convert to float32, check finiteness): the median of 5.
    public static func load(_ request: ModelRequest) throws -> (AnalysisModel, ms: Double) {
        var times: [Double] = [], model: AnalysisModel?
        for _ in 0..<5 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            model = try AnalysisModel(request)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
        }
        return (model!, median(times))
    }

    /// A fixed pseudo-random batch in the range of normalised images.  (B, 3, S, S)
    static func input(batch: Int, size: Int) -> Tensor {
        let x = Tensor(shape: [batch, 3, size, size])
        var s: UInt64 = 0x9E37_79B9_7F4A_7C15
        for i in 0..<x.count {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            x[i] = Float(Int64(bitPattern: s >> 11) % 4000) / 1000 - 2
        }
        return x
    }

    static func median(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }

    static func timed(_ body: () throws -> Void) rethrows -> Double {
        let t0 = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    }

    /// The forward pass: a warm-up batch, then the median of `iters` timed batches.
    public static func forward(
        _ m: AnalysisModel, loadMs: Double, batch: Int, iters: Int, profile: Bool) throws -> Forward {
        let c = m.config, x = input(batch: batch, size: c.imageSize)
        let peak = sgemmPeak()
        try m.engine.forward(x)  // warm-up: buffers, page faults
        let prof = ForwardProfile()
        if profile { m.engine.profile = prof }
        let med = median(try (0..<iters).map { _ in try timed { try m.engine.forward(x) } })
        m.engine.profile = nil
        let ips = Double(batch) / med
        let phases = [
            ("linear", prof.linear), ("attention", prof.attention), ("norm", prof.norm), ("gelu", prof.gelu),
            ("other", prof.other)]
        return Forward(
            imagesPerSecond: ips, gflops: ips * c.flopsPerImage / 1e9, medianSeconds: med, sgemmPeakGflops: peak,
            loadMs: loadMs,
                       profile: profile ? phases.map { ($0.0, $0.1 / max(prof.total, 1e-12)) } : nil)
    }

    /// Fine-tuning steps (forward, backward, AdamW) over all blocks, 10 classes.
    public static func training(_ m: AnalysisModel, batch: Int, iters: Int, profile: Bool = false) throws -> Training {
        let x = input(batch: batch, size: m.config.imageSize)
        let net = TrainableViT(weights: m.engine.weights, keep: m.config.depth, classes: 10, pooling: .mean, seed: 0)
        let labels = (0..<batch).map { $0 % 10 }
        let settings = FineTuneSettings()
        func step() { net.forward(x); _ = net.backward(labels: labels); net.adamW(lr: 1e-4, settings: settings) }
        step()
        let med = median((0..<iters).map { _ in timed(step) })
        var phases: [(String, Double)]?
        if profile {
            // Timed separately: the clock reads cost a little.
            let p = TrainProfile()
            net.profile = p
            for _ in 0..<iters { step() }
            net.profile = nil
            phases = p.phases.map { ($0.0, $0.1 / max(p.total, 1e-12)) }
        }
        return Training(imagesPerSecond: Double(batch) / med, medianSeconds: med, profile: phases)
    }

    /// OpenBLAS sgemm's speed now, with every thread it is allowed: the best of three 1536³
    /// products (7.2 GFLOP each), in GFLOP/s — the ceiling the forward pass is measured against.
    public static func sgemmPeak() -> Double {
        let n = 1536
        let a = Tensor(shape: [n, n]), b = Tensor(shape: [n, n]), c = Tensor(shape: [n, n])
        for i in 0..<(n * n) { a[i] = Float(i % 7) - 3; b[i] = Float(i % 5) - 2 }
        var best = Double.infinity
        for _ in 0..<4 {  // the first is a warm-up (threads, page faults)
            best = min(best, timed { sgemm(m: n, n: n, k: n, a: a.data, lda: n, b: b.data, ldb: n, c: c.data, ldc: n) })
        }
        return 2 * Double(n * n * n) / best / 1e9
    }

    /// The renderer: a 13x13 heatmap drawn, rasterised and PNG-encoded, and written as SVG
    /// (medians in ms; the first run — font loading, glyph cache — is not timed).
    public static func figures(iters: Int) throws -> (pngMs: Double, svgMs: Double) {
        var s: UInt64 = 42
        let values = (0..<13).map { _ in (0..<13).map { _ -> Double in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Double(s >> 11) / Double(1 << 53)
        } }
        let h = Heatmap(
            values: values, rowTitle: "model A: layer", columnTitle: "model B: layer", title: "CKA: A vs B",
            subtitle: "N = 1024 images · minibatch 64")
        _ = try h.figure().raster().png(); _ = h.figure().svg()
        var tp: [Double] = [], ts: [Double] = []
        for _ in 0..<iters {
            tp.append(try timed { _ = try h.figure().raster().png() } * 1000)
            ts.append(timed { _ = h.figure().svg() } * 1000)
        }
        return (median(tp), median(ts))
    }
}
