import ArgumentParser
import Engine
import Foundation
import Render
import Train
import VitLensCore

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure forward-pass speed (or fine-tuning steps, or figure drawing): medians after a warm-up.")

    @Argument(help: "Checkpoint file or Hugging Face folder (not needed with --figures).")
    var checkpoint: String?
    @Option(help: "Number of attention heads (see SPEC §2).")
    var heads: Int?
    @Option(help: "Images per batch.")
    var batch: Int = 64
    @Option(help: "Threads for OpenBLAS and vitlens's own loops (default: all cores).")
    var threads: Int?
    @Option(help: "Timed batches (the median is reported).")
    var iters: Int = 5
    @Flag(help: "Print one JSON object instead of text.")
    var json = false
    @Flag(help: "Also time the phases of the forward pass (linear layers, attention, norms, GELU, other).")
    var profile = false
    @Flag(help: "Time figure rendering instead: a 13x13 CKA heatmap to PNG and to SVG.")
    var figures = false
    @Flag(help: "Time fine-tuning steps instead (forward, backward, AdamW; 10 classes, all blocks).")
    var train = false

    func validate() throws {
        if batch < 1 || batch > 4096 { throw ValidationError("--batch must be between 1 and 4096") }
        if iters < 1 { throw ValidationError("--iters must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if let heads, heads < 1 { throw ValidationError("--heads must be at least 1") }
        if checkpoint == nil && !figures { throw ValidationError("give a checkpoint to benchmark (or --figures)") }
    }

    /// The renderer's speed: a 13x13 heatmap (ViT-Tiny against ViT-Tiny) drawn, rasterised and
    /// PNG-encoded, and written as SVG; the first run (font loading, glyph cache) is not timed.
    func benchFigures() throws {
        var s: UInt64 = 42
        let values = (0..<13).map { _ in (0..<13).map { _ -> Double in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Double(s >> 11) / Double(1 << 53)
        } }
        func png() throws -> Int {
            let h = Heatmap(values: values, rowTitle: "model A: layer", columnTitle: "model B: layer", title: "CKA: A vs B", subtitle: "N = 1024 images · minibatch 64")
            return try h.figure().raster().png().count
        }
        func svg() -> Int {
            Heatmap(values: values, rowTitle: "model A: layer", columnTitle: "model B: layer", title: "CKA: A vs B", subtitle: "N = 1024 images · minibatch 64").figure().svg().utf8.count
        }
        _ = try png(); _ = svg()
        var tp: [Double] = [], ts: [Double] = []
        for _ in 0..<iters {
            var t0 = DispatchTime.now().uptimeNanoseconds
            _ = try png()
            tp.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
            t0 = DispatchTime.now().uptimeNanoseconds
            _ = svg()
            ts.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
        }
        let mp = tp.sorted()[iters / 2], ms = ts.sorted()[iters / 2]
        if json {
            print(JSONValue.object([("heatmap_13x13_png_ms", .double((mp * 100).rounded() / 100)), ("heatmap_13x13_svg_ms", .double((ms * 100).rounded() / 100)), ("iters", .int(iters))]).render())
        } else {
            print(String(format: "figures: 13x13 CKA heatmap, 820x690 PNG %.1f ms, SVG %.2f ms (medians of %d)", mp, ms, iters))
        }
    }

    /// OpenBLAS sgemm's speed on this machine now, with every thread it is allowed: the best of
    /// three 1536³ products (7.2 GFLOP each), in GFLOP/s — the ceiling the forward pass is
    /// measured against.
    static func sgemmPeak() -> Double {
        let n = 1536
        let a = Tensor(shape: [n, n]), b = Tensor(shape: [n, n]), c = Tensor(shape: [n, n])
        for i in 0..<(n * n) { a[i] = Float(i % 7) - 3; b[i] = Float(i % 5) - 2 }
        var best = Double.infinity
        for _ in 0..<4 {  // the first is a warm-up (threads, page faults)
            let t0 = DispatchTime.now().uptimeNanoseconds
            sgemm(m: n, n: n, k: n, a: a.data, lda: n, b: b.data, ldb: n, c: c.data, ldc: n)
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        return 2 * Double(n * n * n) / best / 1e9
    }

    func run() throws {
        if figures { return try benchFigures() }
        guard let checkpoint else { return }
        if let threads { BLASRuntime.setThreads(threads); Workers.count = threads }
        // Checkpoint load (map, parse, convert to float32, check finiteness): median of 5.
        var loads: [Double] = []
        var loaded: LoadedModel?
        for _ in 0..<5 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            loaded = try loadModel(checkpoint, heads: heads, imageSize: nil, quiet: json || loaded != nil)
            loads.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
        }
        let m = loaded!
        let loadMs = loads.sorted()[loads.count / 2]
        let c = m.config
        // Inputs: a fixed pseudo-random pattern in the range of normalised images.
        let x = Tensor(shape: [batch, 3, c.imageSize, c.imageSize])
        var s: UInt64 = 0x9E37_79B9_7F4A_7C15
        for i in 0..<x.count {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            x[i] = Float(Int64(bitPattern: s >> 11) % 4000) / 1000 - 2
        }
        if train {
            let net = TrainableViT(weights: m.engine.weights, keep: c.depth, classes: 10, pooling: .mean, seed: 0)
            let labels = (0..<batch).map { $0 % 10 }
            let settings = FineTuneSettings()
            func step() { net.forward(x); _ = net.backward(labels: labels); net.adamW(lr: 1e-4, settings: settings) }
            step()
            var times: [Double] = []
            for _ in 0..<iters {
                let t0 = DispatchTime.now().uptimeNanoseconds
                step()
                times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
            }
            let median = times.sorted()[times.count / 2]
            if json {
                print(JSONValue.object([("train_images_per_second", .double((Double(batch) / median * 100).rounded() / 100)), ("batch", .int(batch)),
                                        ("threads", .int(BLASRuntime.threads)), ("median_seconds", .double(median)), ("iters", .int(iters))]).render())
            } else {
                print(String(format: "%@: fine-tuning %.1f images/s (median of %d steps of %d: forward, backward, AdamW; %.3f s each), %d threads",
                             m.name, Double(batch) / median, iters, batch, median, BLASRuntime.threads))
            }
            return
        }
        let peak = Bench.sgemmPeak()
        m.engine.forward(x)  // warm-up: buffers, OpenBLAS threads, page faults
        let prof = ForwardProfile()
        if profile { m.engine.profile = prof }
        var times: [Double] = []
        for _ in 0..<iters {
            let t0 = DispatchTime.now().uptimeNanoseconds
            m.engine.forward(x)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        let median = times.sorted()[times.count / 2]
        let phases: [(String, Double)] = [("linear", prof.linear), ("attention", prof.attention), ("norm", prof.norm),
                                          ("gelu", prof.gelu), ("other", prof.other)]
        let ips = Double(batch) / median
        let gflops = ips * c.flopsPerImage / 1e9
        if json {
            print(JSONValue.object([
                ("images_per_second", .double((ips * 100).rounded() / 100)), ("batch", .int(batch)),
                ("threads", .int(BLASRuntime.threads)), ("gflops", .double((gflops * 1000).rounded() / 1000)),
                ("median_seconds", .double(median)), ("iters", .int(iters)), ("blas_core", .string(BLASRuntime.coreName)),
                ("load_ms", .double((loadMs * 10).rounded() / 10)), ("sgemm_peak_gflops", .double((peak * 10).rounded() / 10)), ("fraction_of_peak", .double((gflops / peak * 100_000).rounded() / 100_000)),
            ] + (profile ? [("profile_fraction", .object(phases.map { ($0.0, .double(($0.1 / max(prof.total, 1e-12) * 1000).rounded() / 1000)) }))] : [])).render())
        } else {
            print(String(format: "%@: %.1f images/s (median of %d batches of %d, %.3f s each), %.1f GFLOP/s = %.0f%% of sgemm's %.1f GFLOP/s measured at start-up, %d threads, OpenBLAS %@",
                         m.name, ips, iters, batch, median, gflops, 100 * gflops / peak, peak, BLASRuntime.threads, BLASRuntime.coreName))
            print(String(format: "checkpoint load: %.1f ms (median of 5: map, parse, convert to float32, check)", loadMs))
            if profile {
                print("profile: " + phases.map { String(format: "%@ %.1f%%", $0.0, 100 * $0.1 / max(prof.total, 1e-12)) }.joined(separator: ", "))
            }
        }
    }
}
