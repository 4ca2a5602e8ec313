import Checkpoint
import Engine
import Families
import TestSupport
import Train
import VitLensCore
import XCTest

/// The training module's forward (its own kernels, kept activations) and the engine's (tiles,
/// AVX2 attention, workers) compute the same model: the pooled final-norm features agree.
/// The family a fixture must be told (its tensors are CLIP's or PE spatial's, which no tensor tells apart).
func familyOf(_ file: String) -> ModelFamily? {
    file.contains("pespatial") ? .perceptionEncoder : file.contains("clip") && !file.contains("eva02") ? .clip : nil
}

/// A fixture as the training tests run it: 2 heads, the rotary models at their 32 px, CLIP's and
/// PE spatial's tensors named.
func fixtureModel(_ name: String) throws -> (LoadedCheckpoint, ViTConfig) {
    let ckpt = try CheckpointLoader.loadModel(path: Fixtures.checkpoint(name))
    let config = try ViTConfig.infer(
        from: ckpt, heads: 2, imageSize: name.contains("rope") || name.contains("dinov3") ? 32 : nil,
        family: familyOf(name))
    return (ckpt, config)
}

/// The 2025 families' fixtures every training test runs on too.
let fixtures2025 = [
    "family_eva02.safetensors", "family_eva02clip.safetensors", "family_pecore.safetensors",
    "family_pespatial.safetensors", "family_aimv2.safetensors", "family_dinov3plus.safetensors",
    "family_hf_siglip2", "family_hf_aimv2", "family_hf_dinov3plus", "family_ropemixed.safetensors",
]

final class EngineAgreementTests: XCTestCase {
    func testTrainForwardMatchesEngine() throws {
        for name in [
            "tiny_f32.safetensors", "tiny2_f32.safetensors", "family_deit3.safetensors", "family_dinov2reg.safetensors",
                     "family_clip.safetensors", "family_siglip.safetensors", "family_beit.safetensors",
                         "family_beitshared.safetensors",
                     "family_rpe_maelite.pth", "family_hf_beit", "family_hf_siglip", "family_ropevit.safetensors",
                     "family_dinov3.safetensors", "family_ropereggap.safetensors"] + fixtures2025 {
            let (ckpt, cfg) = try fixtureModel(name)
            let weights = try ViTWeights(checkpoint: ckpt, config: cfg)
            let B = 3, C = cfg.dim, T = cfg.tokens, np = cfg.prefixTokens
            let x = Tensor(shape: [B, 3, cfg.imageSize, cfg.imageSize])
            var rng = SplitMix64(seed: 7)
            for i in 0..<x.count { x[i] = Float(rng.truncatedNormal()) }
            let h = try ViTEngine(weights: weights).forward(x)  // (B, T, C), final norm applied
            for pooling in cfg.classToken ? [ProbePooling.mean, .cls] : [.mean] {
                let net = TrainableViT(weights: weights, keep: cfg.depth, classes: 3, pooling: pooling, seed: 0)
                net.forward(x)
                let got = net.pooledFeatures(batch: B).map(Double.init)
                var want = [Double](repeating: 0, count: B * C)
                for b in 0..<B {
                    for i in 0..<C {
                        if pooling == .cls { want[b * C + i] = Double(h.data[b * T * C + i]); continue }
                        var s = 0.0
                        for t in np..<T { s += Double(h.data[(b * T + t) * C + i]) }
                        want[b * C + i] = s / Double(T - np)
                    }
                }
                let c = compare(got, want, tolerance: 1e-5, mixed: true)
                XCTAssertEqual(c.violations, 0, "\(name), pool \(pooling): \(c)")
            }
        }
    }
}

/// A fine-tuned model saved in its family's timm names loads again as the same family and
/// computes what the trainer computed (after a few AdamW steps, so nothing is the input by luck).
final class SaveRoundTripTests: XCTestCase {
    func testEveryFamilySavesAndLoadsAgain() throws {
        let dir = NSTemporaryDirectory() + "vitlens-save-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in [
            "family_deit3.safetensors", "family_dinov2reg.safetensors", "family_clip.safetensors",
            "family_siglip.safetensors",
                     "family_beit.safetensors", "family_beitshared.safetensors", "family_rpe_maelite.pth",
                     "family_ropevit.safetensors", "family_dinov3.safetensors",
                     "family_ropereggap.safetensors"] + fixtures2025 {
            let (ckpt, cfg) = try fixtureModel(name)
            let net = TrainableViT(
                weights: try ViTWeights(checkpoint: ckpt, config: cfg), keep: cfg.depth, classes: 3, pooling: .mean,
                seed: 1)
            let B = 2, x = Tensor(shape: [B, 3, cfg.imageSize, cfg.imageSize])
            var rng = SplitMix64(seed: 3)
            for i in 0..<x.count { x[i] = Float(rng.truncatedNormal()) }
            var settings = FineTuneSettings()
            settings.warmupEpochs = 0
            for _ in 0..<3 { net.forward(x); _ = net.backward(labels: [0, 2]); net.adamW(lr: 1e-2, settings: settings) }
            net.forward(x)
            let want = net.pooledFeatures(batch: B).map(Double.init)
            let state = net.stateDict()
            let path = dir + "/" + name + ".safetensors"
            try withExtendedLifetime(state) {
                try SafetensorsWriter.write(
                    path: path, tensors: state.map { .init(name: $0.0, shape: $0.1, data: UnsafePointer($0.2.data)) },
                                            metadata: [
                                                ("num_heads", "2"), ("layer_norm_eps", "\(cfg.eps)"),
                                                ("hidden_act", cfg.activation.rawValue),
                                                ("image_size", "\(cfg.imageSize)"),
                                                ("family", cfg.modelFamily.rawValue)])
            }
            let again = try CheckpointLoader.loadModel(path: path)
            let c2 = try ViTConfig.infer(from: again)
            XCTAssertEqual(c2.family, cfg.family, name)
            XCTAssertEqual(
                [c2.classToken, c2.layerScale, c2.preNorm, c2.absolutePositions, c2.relativeBlockTables,
                c2.relativeSharedTable, c2.keyBias, c2.patchBias],
                           [cfg.classToken, cfg.layerScale, cfg.preNorm, cfg.absolutePositions, cfg.relativeBlockTables,
                               cfg.relativeSharedTable, cfg.keyBias, cfg.patchBias], name)
            XCTAssertEqual(c2.registers, cfg.registers, name)
            XCTAssertEqual(
                [c2.swiGLU, c2.mlpNorm, c2.attentionNorm, c2.patchNorm, c2.projectionBias, c2.mlpBias],
                [cfg.swiGLU, cfg.mlpNorm, cfg.attentionNorm, cfg.patchNorm, cfg.projectionBias, cfg.mlpBias], name)
            // timm's names: q, k, v fused except in an EVA-02 that had them apart; SwiGLU's layers
            // apart except in EVA-02 without its inner norm.
            XCTAssertEqual(c2.separateQKV, cfg.saveNames.separateQKV, name)
            XCTAssertEqual(c2.separateGLU, cfg.saveNames.separateGLU, name)
            XCTAssertEqual(c2.norm, cfg.norm, name)
            XCTAssertEqual(c2.rotary, cfg.rotary, name)
            XCTAssertEqual(c2.positionSlots, cfg.positionSlots, name)
            XCTAssertEqual(c2.activation, cfg.activation, name)
            if !cfg.keyBias { XCTAssertNotNil(again.tensors["blocks.0.attn.qkv.bias"], "q_bias/v_bias fused again") }
            let h = try ViTEngine(weights: try ViTWeights(checkpoint: again, config: c2)).forward(x)
            let T = c2.tokens, C = c2.dim, np = c2.prefixTokens
            var got = [Double](repeating: 0, count: B * C)
            for b in 0..<B {
                for i in 0..<C {
                got[b * C + i] = (np..<T).reduce(0.0) { $0 + Double(h.data[(b * T + $1) * C + i]) } / Double(T - np) } }
            let d = compare(got, want, tolerance: 1e-5, mixed: true)
            XCTAssertEqual(d.violations, 0, "\(name): \(d)")
        }
    }
}
