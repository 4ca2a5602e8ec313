import Checkpoint
import Engine
import TestSupport
import Train
import VitLensCore
import XCTest

/// The training module's forward (its own kernels, kept activations) and the engine's (tiles,
/// AVX2 attention, workers) compute the same model: the pooled final-norm features agree.
final class EngineAgreementTests: XCTestCase {
    func testTrainForwardMatchesEngine() throws {
        for name in ["tiny_f32.safetensors", "tiny2_f32.safetensors"] {
            let ckpt = try CheckpointLoader.load(path: Fixtures.checkpoint(name))
            let cfg = try ViTConfig.infer(from: ckpt)
            let weights = try ViTWeights(checkpoint: ckpt, config: cfg)
            let B = 3, C = cfg.dim, T = cfg.tokens, np = cfg.prefixTokens
            let x = Tensor(shape: [B, 3, cfg.imageSize, cfg.imageSize])
            var rng = SplitMix64(seed: 7)
            for i in 0..<x.count { x[i] = Float(rng.truncatedNormal()) }
            let h = ViTEngine(weights: weights).forward(x)  // (B, T, C), final norm applied
            for pooling in [ProbePooling.mean, .cls] {
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
