import Checkpoint
@testable import Engine
@testable import Families
import Images
import TestSupport
import VitLensCore
import Foundation
import XCTest

/// Records every tap, for comparison with timm's hooks.
final class RecordingTaps: ForwardTaps {
    var reps: [Int: [Float]] = [:]
    var probs: [Int: [Float]] = [:]
    var logits: [Int: [Float]] = [:]
    let wantsRepresentations: Bool, wantsAttentionLogits: Bool, wantsAttentionProbabilities: Bool
    let perRep: Int
    let representationKind: RepresentationKind

    init(reps: Bool = true, logits: Bool = true, probs: Bool = true, perRep: Int, kind: RepresentationKind = .normed) {
        wantsRepresentations = reps; wantsAttentionLogits = logits; wantsAttentionProbabilities = probs
        self.perRep = perRep
        representationKind = kind
    }

    func representation(_ index: Int, _ x: UnsafePointer<Float>, batch: Int) {
        reps[index, default: []] += Array(UnsafeBufferPointer(start: x, count: batch * perRep))
    }

    /// Called concurrently for different images: kept per (layer, image) under a lock.
    func attention(layer: Int, image: Int, logits l: UnsafePointer<Float>?, probabilities: UnsafePointer<Float>) {
        let n = perAttention
        let p = Array(UnsafeBufferPointer(start: probabilities, count: n))
        let lg = l.map { Array(UnsafeBufferPointer(start: $0, count: n)) }
        lock.lock()
        probs[layer * 10_000 + image] = p
        if let lg { logits[layer * 10_000 + image] = lg }
        lock.unlock()
    }
    var perAttention = 0
    let lock = NSLock()

    /// Layer-major flattening, as the goldens: [index][image]...
    func flat(_ d: [Int: [Float]]) -> [Double] { d.keys.sorted().flatMap { d[$0]!.map(Double.init) } }
}

func loadEngine(_ file: String, heads: Int? = 2, imageSize: Int? = nil) throws -> ViTEngine {
    let ckpt = try CheckpointLoader.loadModel(path: Fixtures.checkpoint(file))
    let config = try ViTConfig.infer(from: ckpt, heads: heads, imageSize: imageSize)
    return ViTEngine(weights: try ViTWeights(checkpoint: ckpt, config: config))
}

func goldenInput(_ name: String, size: Int = 32) throws -> Tensor {
    let x = try NpyArray(path: Fixtures.golden(name + "_input.npy"))
    return Tensor(shape: [x.shape[0], 3, size, size], values: x.values.map(Float.init))
}

final class ParityTests: XCTestCase {
    let layouts = ["tiny_f32.safetensors", "tiny_f16.safetensors", "tiny_bf16.safetensors", "tiny_timm.pth",
                   "tiny_mae.pth", "tiny_moco.pth.tar", "tiny_dino.pth", "tiny_hf"]

    /// Every layout against timm run in float64 (Tests/Fixtures/make_fixtures.py):
    /// representations within 1e-3·max(1, |ref|), attention probabilities within 1e-4 (the issue's
    /// tolerances), logits within 1e-3·max(1, |ref|).
    func testEveryLayoutMatchesTimmFloat64() throws {
        let x = try goldenInput("none")
        let feats = try NpyArray(path: Fixtures.golden("none_features.npy"))
        let att = try NpyArray(path: Fixtures.golden("none_attention.npy"))
        let logit = try NpyArray(path: Fixtures.golden("none_logits.npy"))
        for file in layouts {
            let engine = try loadEngine(file, heads: file == "tiny_hf" ? nil : 2)
            XCTAssertEqual(engine.config.heads, 2)
            let c = engine.config
            let taps = RecordingTaps(perRep: c.tokens * c.dim)
            taps.perAttention = c.heads * c.tokens * c.tokens
            try engine.forward(x, taps: taps)
            let r = compare(taps.flat(taps.reps), feats.values, tolerance: 1e-3, mixed: true)
            XCTAssertEqual(r.violations, 0, "\(file) representations: \(r)")
            let a = compare(taps.flat(taps.probs), att.values, tolerance: 1e-4)
            XCTAssertEqual(a.violations, 0, "\(file) attention: \(a)")
            let l = compare(taps.flat(taps.logits), logit.values, tolerance: 1e-3, mixed: true)
            XCTAssertEqual(l.violations, 0, "\(file) logits: \(l)")
        }
    }

    func testResidualStreamMatchesTimm() throws {
        let engine = try loadEngine("tiny_f32.safetensors")
        let c = engine.config
        let taps = RecordingTaps(logits: false, probs: false, perRep: c.tokens * c.dim, kind: .residual)
        try engine.forward(try goldenInput("none"), taps: taps)
        let r = compare(
            taps.flat(taps.reps), try NpyArray(path: Fixtures.golden("none_residual.npy")).values, tolerance: 1e-3,
            mixed: true)
        XCTAssertEqual(r.violations, 0, "\(r)")
    }

    /// Run at 48x48: pos_embed resampled as timm's checkpoint_filter_fn does (antialiased bicubic).
    func testOtherImageSizeResamplesPositions() throws {
        let engine = try loadEngine("tiny_f32.safetensors", imageSize: 48)
        XCTAssertEqual(engine.config.tokens, 1 + 36)
        let c = engine.config
        let taps = RecordingTaps(logits: false, probs: false, perRep: c.tokens * c.dim)
        try engine.forward(try goldenInput("size48", size: 48), taps: taps)
        let r = compare(
            taps.flat(taps.reps), try NpyArray(path: Fixtures.golden("size48_features.npy")).values, tolerance: 1e-3,
            mixed: true)
        XCTAssertEqual(r.violations, 0, "\(r)")
    }

    /// BEiT at other sizes (48 px, a 6×6 grid, and 24 px, 3×3, from 4×4 tables): the relative
    /// position tables resized as timm resizes them on load, the absolute positions resampled,
    /// against timm float64 (per-block tables; mae-lite's with absolute positions; a shared table;
    /// measured ≤ 2.0e-6 / 8.3e-7 at 48 px).
    func testRelativeTablesResizedAsTimm() throws {
        for name in ["beit", "rpe", "beitshared"] {
            for (size, input) in [(48, "size48"), (24, "family_size24")] {
                let engine = try loadEngine("family_\(name).safetensors", heads: nil, imageSize: size)
                let c = engine.config
                XCTAssertEqual(c.tokens, (size / 8) * (size / 8) + 1)
                let taps = RecordingTaps(perRep: c.tokens * c.dim)
                taps.perAttention = c.heads * c.tokens * c.tokens
                try engine.forward(try goldenInput(input, size: size), taps: taps)
                let r = compare(
                    taps.flat(taps.reps),
                    try NpyArray(path: Fixtures.golden("family_\(name)_size\(size)_features.npy")).values,
                                tolerance: 1e-3, mixed: true)
                XCTAssertEqual(r.violations, 0, "\(name) at \(size) px representations: \(r)")
                let a = compare(
                    taps.flat(taps.probs),
                    try NpyArray(path: Fixtures.golden("family_\(name)_size\(size)_attention.npy")).values,
                                tolerance: 1e-4)
                XCTAssertEqual(a.violations, 0, "\(name) at \(size) px attention: \(a)")
            }
        }
    }

    /// The whole pipeline from JPEG/PNG files of other sizes (--resize timm-eval) against
    /// PIL + torchvision + timm: mean relative error ≤ 3e-2 (the issue's bound).
    func testTimmEvalPipeline() throws {
        let engine = try loadEngine("tiny_f16.safetensors")
        let paths = try listImages(in: Fixtures.path("images/eval"))
        let batch = Tensor(shape: [paths.count, 3, 32, 32])
        XCTAssertTrue(loadBatch(paths, size: 32, mode: .timmEval, into: batch).allSatisfy { $0 == nil })
        let c = engine.config
        let taps = RecordingTaps(logits: false, probs: false, perRep: c.tokens * c.dim)
        try engine.forward(batch, taps: taps)
        let r = compare(
            taps.flat(taps.reps), try NpyArray(path: Fixtures.golden("eval_features.npy")).values, tolerance: 1e-3,
            mixed: true)
        XCTAssertLessThanOrEqual(r.meanRelative, 3e-2, "\(r)")
    }

    /// Taps change nothing: the final tokens are bit-identical with and without them, and
    /// across batch splits (batch 1 vs 4).
    func testTapsOffAndOnGiveIdenticalOutputs() throws {
        let x = try goldenInput("none")
        let engine = try loadEngine("tiny_f32.safetensors")
        let plain = try engine.forward(x).array
        let c = engine.config
        let taps = RecordingTaps(perRep: c.tokens * c.dim)
        taps.perAttention = c.heads * c.tokens * c.tokens
        let tapped = try engine.forward(x, taps: taps).array
        XCTAssertEqual(plain, tapped)
        let one = Tensor(shape: [1, 3, 32, 32])
        one.data.update(from: x.data + 2 * 3 * 32 * 32, count: 3 * 32 * 32)
        let single = try engine.forward(one).array
        let r = compare(
            single.map(Double.init), plain[(2 * c.tokens * c.dim)..<(3 * c.tokens * c.dim)].map(Double.init),
            tolerance: 1e-5, mixed: true)
        XCTAssertEqual(r.violations, 0, "batch of 1 vs batch of 4: \(r)")
    }

    /// Attention through OpenBLAS (the reference path, any head width) and through the AVX2
    /// kernels: both match timm, and each other's final tokens within 1e-5.
    func testAttentionPathsAgree() throws {
        try XCTSkipUnless(CPUKernels.avx2, "this CPU has no AVX2 + FMA")
        let x = try goldenInput("none")
        let feats = try NpyArray(path: Fixtures.golden("none_features.npy"))
        let att = try NpyArray(path: Fixtures.golden("none_attention.npy"))
        var outs: [[Float]] = []
        for path in [ViTEngine.AttentionPath.blas, .avx2] {
            let engine = try loadEngine("tiny_f32.safetensors")
            engine.attentionPath = path
            let c = engine.config
            let taps = RecordingTaps(perRep: c.tokens * c.dim)
            taps.perAttention = c.heads * c.tokens * c.tokens
            outs.append(try engine.forward(x, taps: taps).array)
            XCTAssertEqual(
                compare(taps.flat(taps.reps), feats.values, tolerance: 1e-3, mixed: true).violations, 0,
                "\(path) representations")
            XCTAssertEqual(
                compare(taps.flat(taps.probs), att.values, tolerance: 1e-4).violations, 0, "\(path) attention")
        }
        let d = compare(outs[0].map(Double.init), outs[1].map(Double.init), tolerance: 1e-5, mixed: true)
        XCTAssertEqual(d.violations, 0, "blas vs avx2: \(d)")
    }

    /// BEiT's relative position bias on every path: OpenBLAS and the AVX2 score kernel (which adds
    /// it as it stores each tile), whole images per worker and token rows split inside an image
    /// (queries starting mid-image), per-block and shared tables — all match timm in float64, and
    /// the logits the taps see include the bias (their softmax is the probabilities).
    func testRelativePositionBiasOnEveryPath() throws {
        for name in ["beit", "beitshared"] {
            try checkEveryPath(name, input: try goldenInput("none"), golden: "family_\(name)") {
                let engine = try loadEngine("family_\(name).safetensors", heads: nil)
                XCTAssertTrue(engine.config.relativePositionBias)
                return engine
            }
        }
    }

    /// However the batch is split over workers — whole images per worker, token rows split
    /// inside an image (more workers than images), tiles that cut an image in two — the
    /// representations still match timm, and the final tokens agree with one worker's.
    func testWorkerSplitsAgree() throws {
        let x = try goldenInput("none")
        let feats = try NpyArray(path: Fixtures.golden("none_features.npy"))
        let saved = Workers.count
        defer { Workers.count = saved }
        Workers.count = 1
        let engine = try loadEngine("tiny_f32.safetensors")
        let c = engine.config
        let reference = try engine.forward(x).array
        for (workers, tile) in [(2, 512), (3, 512), (8, 512), (8, 5), (2, 7), (1, 7)] {
            Workers.count = workers
            engine.tileRowsTarget = tile
            let taps = RecordingTaps(logits: false, probs: false, perRep: c.tokens * c.dim)
            let out = try engine.forward(x, taps: taps).array
            let r = compare(taps.flat(taps.reps), feats.values, tolerance: 1e-3, mixed: true)
            XCTAssertEqual(r.violations, 0, "\(workers) workers, tiles of \(tile) rows: \(r)")
            let d = compare(out.map(Double.init), reference.map(Double.init), tolerance: 1e-5, mixed: true)
            XCTAssertEqual(d.violations, 0, "\(workers) workers, tiles of \(tile) rows vs 1 worker: \(d)")
        }
        // Attention taps with more workers than images: whole images per worker, still exact.
        Workers.count = 8
        engine.tileRowsTarget = 5
        let att = try NpyArray(path: Fixtures.golden("none_attention.npy"))
        let taps = RecordingTaps(perRep: c.tokens * c.dim)
        taps.perAttention = c.heads * c.tokens * c.tokens
        try engine.forward(x, taps: taps)
        let a = compare(taps.flat(taps.probs), att.values, tolerance: 1e-4)
        XCTAssertEqual(a.violations, 0, "attention, 8 workers: \(a)")
    }
}

final class LoaderValidationTests: XCTestCase {
    func tweaked(_ change: (inout [String: RawTensor]) -> Void) throws -> LoadedCheckpoint {
        let c = try CheckpointLoader.loadModel(path: Fixtures.checkpoint("tiny_f32.safetensors"))
        var t = c.tensors
        change(&t)
        return c.replacingTensors(t)
    }

    func testMisShapedTensorIsNamed() throws {
        let c = try tweaked {
            $0["blocks.1.mlp.fc1.weight"] = RawTensor(shape: [32, 10], floats: .init(repeating: 0, count: 320)) }
        let config = try ViTConfig.infer(from: c, heads: 2)
        XCTAssertThrowsError(try ViTWeights(checkpoint: c, config: config)) { e in
            XCTAssertEqual("\(e)", "blocks.1.mlp.fc1.weight: expected [32, 16], got [32, 10]")
        }
    }

    func testMissingTensorIsNamed() throws {
        let c = try tweaked { $0["blocks.0.attn.proj.bias"] = nil }
        XCTAssertThrowsError(try ViTWeights(checkpoint: c, config: try ViTConfig.infer(from: c, heads: 2))) { e in
            XCTAssertEqual("\(e)", "missing tensor blocks.0.attn.proj.bias")
        }
    }

    func testNonFiniteWeightIsNamed() throws {
        let c = try tweaked { t in
            var v = try! t["norm.weight"]!.floats(name: "")
            v[3] = .nan
            t["norm.weight"] = RawTensor(shape: [16], floats: v)
        }
        XCTAssertThrowsError(try ViTWeights(checkpoint: c, config: try ViTConfig.infer(from: c, heads: 2))) { e in
            XCTAssertTrue("\(e)".hasPrefix("norm.weight: non-finite weight nan at element 3"), "\(e)")
        }
    }

    /// Finite but enormous weights overflow float32 inside block 1: the engine says where.
    func testNonFiniteActivationsAreDetected() throws {
        let c = try tweaked {
            $0["blocks.0.mlp.fc1.weight"] = RawTensor(shape: [32, 16], floats: .init(repeating: 1e38, count: 512)) }
        let config = try ViTConfig.infer(from: c, heads: 2)
        let engine = ViTEngine(weights: try ViTWeights(checkpoint: c, config: config))
        XCTAssertThrowsError(try engine.forward(try goldenInput("none"))) { e in
            XCTAssertEqual(e as? ForwardFailure, .nonFinite(at: 1), "\(e)")
        }
        XCTAssertEqual("\(EngineError.nonFinite(model: "m.pth", at: 1, batch: 0))",
                       "m.pth: non-finite activations (NaN or inf) in the output of block 1, batch 0; the weights "
                           + "overflow float32 on these images")
        let ok = try loadEngine("tiny_f32.safetensors")
        XCTAssertNoThrow(try ok.forward(try goldenInput("none")))
    }

    func testHeadsMustDivideWidth() throws {
        let c = try CheckpointLoader.loadModel(path: Fixtures.checkpoint("tiny_f32.safetensors"))
        XCTAssertThrowsError(try ViTConfig.infer(from: c, heads: 5)) { e in
            XCTAssertEqual("\(e)", "5 heads (given) do not divide the embedding width 16")
            guard case EngineError.headsDoNotDivide(5, 16, .option)? = e as? EngineError else { return XCTFail("\(e)") }
        }
    }

    func testHeadsPrecedence() throws {
        let st = try CheckpointLoader.loadModel(path: Fixtures.checkpoint("tiny_f32.safetensors"))
        XCTAssertEqual(try ViTConfig.infer(from: st).headsSource, .metadata)
        XCTAssertEqual(try ViTConfig.infer(from: st, heads: 4).heads, 4)
        let pth = try CheckpointLoader.loadModel(path: Fixtures.checkpoint("tiny_timm.pth"))
        let conv = try ViTConfig.infer(from: pth)
        XCTAssertEqual(conv.headsSource, .convention)
        XCTAssertEqual(conv.heads, 1)  // 16/64 rounds to 0: at least one head
        let hf = try CheckpointLoader.loadModel(path: Fixtures.checkpoint("tiny_hf"))
        XCTAssertEqual(try ViTConfig.infer(from: hf).headsSource, .config)
    }
}

/// A family against its float64 golden on every attention path (OpenBLAS, the AVX2 kernels) and
/// worker split (whole images per worker; token rows split inside an image), with and without
/// attention taps; the logits the taps see are what the softmax saw.
func checkEveryPath(_ name: String, input x: Tensor, golden: String, _ make: () throws -> ViTEngine,
                    file: StaticString = #filePath, line: UInt = #line) throws {
    let feats = try NpyArray(path: Fixtures.golden(golden + "_features.npy"))
    let att = try NpyArray(path: Fixtures.golden(golden + "_attention.npy"))
    let saved = Workers.count
    defer { Workers.count = saved }
    for path in CPUKernels.avx2 ? [ViTEngine.AttentionPath.blas, .avx2] : [.blas] {
        for (workers, tile) in [(1, 800), (8, 5)] {
            Workers.count = workers
            let engine = try make()
            engine.attentionPath = path
            engine.tileRowsTarget = tile
            let c = engine.config
            let taps = RecordingTaps(perRep: c.tokens * c.dim)
            taps.perAttention = c.heads * c.tokens * c.tokens
            try engine.forward(x, taps: taps)
            let what = "\(name), \(path), \(workers) workers"
            let rf = compare(taps.flat(taps.reps), feats.values, tolerance: 1e-3, mixed: true)
            XCTAssertEqual(rf.violations, 0, "\(what): \(rf)", file: file, line: line)
            let ra = compare(taps.flat(taps.probs), att.values, tolerance: 1e-4)
            XCTAssertEqual(ra.violations, 0, "\(what): \(ra)", file: file, line: line)
            // Without taps (queries split inside images when workers outnumber images).
            let plain = RecordingTaps(logits: false, probs: false, perRep: c.tokens * c.dim)
            try engine.forward(x, taps: plain)
            XCTAssertEqual(compare(plain.flat(plain.reps), feats.values, tolerance: 1e-3, mixed: true).violations, 0,
                           what + ", no attention taps", file: file, line: line)
            let logits = taps.flat(taps.logits), probs = taps.flat(taps.probs), T = c.tokens
            var worst = 0.0
            for r in 0..<(logits.count / T) {
                let row = logits[(r * T)..<((r + 1) * T)], m = row.max()!
                let e = row.map { exp($0 - m) }, sum = e.reduce(0, +)
                for j in 0..<T { worst = max(worst, abs(e[j] / sum - probs[r * T + j])) }
            }
            XCTAssertLessThan(worst, 1e-6, what + ": softmax(logits) vs probabilities", file: file, line: line)
        }
    }
}
