import BF16
import Checkpoint
@testable import Engine
@testable import Families
import Foundation
import TestSupport
import VitLensCore
import XCTest

/// --precision bf16: the rounding, the bf16 matmul against float64, and the whole forward pass
/// against timm in float64 with tolerances that follow from bf16's 8-bit significand. On a CPU
/// without AVX512_BF16 the kernels' tests are skipped and the refusal is tested instead.
final class PrecisionTests: XCTestCase {
    var bf16Here: Bool { Precision.bf16Unavailable == nil }

    /// The nearest bfloat16 of x by exhaustive comparison in Double (ties: the even pattern);
    /// subnormals become ±0 (as the AVX512_BF16 instruction makes them).
    func nearest(_ x: Float) -> UInt16 {
        let u = x.bitPattern
        if x.isSubnormal { return UInt16(u >> 16) & 0x8000 }
        let down = UInt16(u >> 16), up = down &+ 1
        // The pattern past the largest finite bf16 stands for 2¹²⁸ (where rounding to ∞ begins).
        func value(_ b: UInt16) -> Double {
            b & 0x7FFF == 0x7F80 ? (b & 0x8000 == 0 ? 1 : -1) * 0x1p128 : Double(Float(bitPattern: UInt32(b) << 16))
        }
        let dd = abs(Double(x) - value(down)), du = abs(Double(x) - value(up))
        if du < dd { return up }
        if dd < du { return down }
        return down % 2 == 0 ? down : up
    }

    func testRoundingToNearestEven() {
        let specials: [(Float, UInt16)] = [
            (1, 0x3F80), (Float(bitPattern: 0x3F80_8000), 0x3F80),  // 1 + 2⁻⁸: a tie, to the even 1.0
            (Float(bitPattern: 0x3F81_8000), 0x3F82),               // a tie above an odd pattern: up
            (Float(bitPattern: 0x3F80_8001), 0x3F81),               // just above the tie: up
            (-2.5, 0xC020), (0, 0), (-0.0, 0x8000), (.infinity, 0x7F80), (-.infinity, 0xFF80),
            (Float.greatestFiniteMagnitude, 0x7F80),                // rounds past the largest bf16: ∞, as PyTorch
            (Float(bitPattern: 0x0000_8000), 0x0000), (-Float.leastNormalMagnitude / 2, 0x8000),  // subnormals: ±0
        ]
        let got = bfloat16Bits(specials.map(\.0))
        for (k, (x, want)) in specials.enumerated() { XCTAssertEqual(got[k], want, "\(x)") }
        XCTAssertTrue(Float(bitPattern: UInt32(bfloat16Bits([.nan])[0]) << 16).isNaN)
        // 100,003 values (the vector path in blocks of 32, the scalar tail) against the exhaustive rule.
        var rng = SplitMix(state: 3)
        let xs = (0..<100_003).map { i -> Float in
            let r = Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))
            return r.isFinite && i % 3 != 0 ? r : Float(rng.normal()) * 10
        }
        let b = bfloat16Bits(xs)
        var bad = 0
        for (k, x) in xs.enumerated() where b[k] != nearest(x) { bad += 1 }
        XCTAssertEqual(bad, 0)
    }

    /// y = x·Wᵀ + b through oneDNN: against float64 of the bf16-rounded inputs (only float32
    /// accumulation differs), and against float64 of the exact inputs within the bound bf16's
    /// rounding gives (each input off by at most 2⁻⁹ relative: |Δ| ≤ 2·2⁻⁹·Σ|x||w|, plus slack).
    func testMatmulAgainstFloat64() throws {
        guard bf16Here else { throw XCTSkip("no AVX512_BF16 here: \(Precision.bf16Unavailable ?? "")") }
        var rng = SplitMix(state: 5)
        for (m, n, k) in [(1, 7, 5), (37, 96, 48), (197, 192, 64), (788, 576, 192), (50, 192, 768)] {
            let w = Tensor(shape: [n, k], values: (0..<(n * k)).map { _ in rng.normal() * 0.1 })
            let x = (0..<(m * k)).map { _ in rng.normal() }
            let bias = (0..<n).map { _ in rng.normal() }
            let layer = try PackedLinear(w)
            for accumulate in [false, true] {
                var y = [Float](repeating: 0.5, count: m * n)
                let ok = y.withUnsafeMutableBufferPointer { yb in
                    x.withUnsafeBufferPointer { xb in bias.withUnsafeBufferPointer { bb in
                        layer.forward(
                            yb.baseAddress!, ldy: n, xb.baseAddress!, ldx: k, rows: m, bias: bb.baseAddress!,
                            accumulate: accumulate)
                    } }
                }
                XCTAssertTrue(ok)
                let xr = bfloat16Bits(x).map { Double(Float(bitPattern: UInt32($0) << 16)) }
                let wr = bfloat16Bits(Array(UnsafeBufferPointer(start: w.data, count: n * k))).map {
                    Double(Float(bitPattern: UInt32($0) << 16)) }
                var worstRounded = 0.0, worstExact = 0.0
                for i in 0..<m {
                    for j in 0..<n {
                        var rounded = 0.0, exact = 0.0, mass = 0.0
                        for t in 0..<k {
                            rounded += xr[i * k + t] * wr[j * k + t]
                            exact += Double(x[i * k + t]) * Double(w.data[j * k + t])
                            mass += abs(Double(x[i * k + t]) * Double(w.data[j * k + t]))
                        }
                        let base = Double(bias[j]) + (accumulate ? 0.5 : 0)
                        let got = Double(y[i * n + j])
                        worstRounded = max(worstRounded, abs(got - base - rounded) / (mass + 1))
                        worstExact = max(worstExact, abs(got - base - exact) / (mass + 1))
                    }
                }
                XCTAssertLessThan(worstRounded, 1e-6, "\(m)x\(n)x\(k): float32 accumulation of the rounded inputs")
                XCTAssertLessThan(worstExact, 2.0 / 512 + 1e-6, "\(m)x\(n)x\(k): within bf16's rounding of the inputs")
            }
        }
    }

    /// The whole forward pass in bf16 against timm (or transformers) in float64, a plain ViT and
    /// the families:
    /// every representation and attention probability within 5e-2·max(1, |ref|), with mean
    /// relative errors below 2e-2. bf16 rounds each product's inputs to 8 significant bits (2⁻⁹
    /// relative); in these 16-wide random fixtures LayerNorm over few channels and logits of
    /// size ~10 magnify that for a handful of values (measured: 0.044 and 0.036 at worst, 0.3 %
    /// and 0.9 % on average), while f32 stays within 1e-3 / 1e-4 (ParityTests). What bf16 does to
    /// the analyses of real models is PrecisionCLITests'.
    func testForwardAgainstTimmFloat64() throws {
        guard bf16Here else { throw XCTSkip("no AVX512_BF16 here: \(Precision.bf16Unavailable ?? "")") }
        let x = try goldenInput("none")
        for (file, golden) in [("tiny_f32.safetensors", "none"), ("family_deit3.safetensors", "family_deit3"),
                               ("family_dinov2reg.safetensors", "family_dinov2reg"),
                                   ("family_beit.safetensors", "family_beit"),
                               ("family_siglip.safetensors", "family_siglip"),
                               ("family_ropevit.safetensors", "family_ropevit"),
                               ("family_dinov3.safetensors", "family_dinov3"),
                               ("family_ropereggap.safetensors", "family_ropereggap"),
                               ("family_eva02.safetensors", "family_eva02"),
                               ("family_eva02clip.safetensors", "family_eva02clip"),
                               ("family_pecore.safetensors", "family_pecore"),
                               ("family_pespatial.safetensors", "family_pespatial"),
                               ("family_aimv2.safetensors", "family_aimv2"),
                               ("family_dinov3plus.safetensors", "family_dinov3plus"),
                               ("family_hf_siglip2", "family_hf_siglip2")] {
            let ckpt = try CheckpointLoader.loadModel(path: Fixtures.checkpoint(file))
            let config = try ViTConfig.infer(
                from: ckpt, heads: 2, imageSize: 32, family: file.contains("pespatial") ? .perceptionEncoder : nil)
            let engine = try ViTEngine(weights: try ViTWeights(checkpoint: ckpt, config: config), precision: .bf16)
            let c = engine.config
            let taps = RecordingTaps(logits: false, perRep: c.tokens * c.dim)
            taps.perAttention = c.heads * c.tokens * c.tokens
            try engine.forward(x, taps: taps)
            let feats = try NpyArray(
                path: Fixtures.golden(golden == "none" ? "none_features.npy" : golden + "_features.npy"))
            let att = try NpyArray(
                path: Fixtures.golden(golden == "none" ? "none_attention.npy" : golden + "_attention.npy"))
            // PE spatial (no final norm), AIMv2 (RMSNorm, which does not centre) and DINOv3 S+ (its
            // SwiGLU's product of two rounded projections) let a few values through further:
            // measured 0.081, 0.085 and 0.069 at worst (6, 6 and 1 of 3,264 values over 5e-2),
            // 0.35 %, 0.43 % and 0.40 % on average.
            let bound = ["family_pespatial", "family_aimv2", "family_dinov3plus"].contains(golden) ? 1e-1 : 5e-2
            let r = compare(taps.flat(taps.reps), feats.values, tolerance: bound, mixed: true)
            XCTAssertEqual(r.violations, 0, "\(file) representations: \(r)")
            XCTAssertLessThan(r.meanRelative, 2e-2, "\(file) representations: \(r)")
            let a = compare(taps.flat(taps.probs), att.values, tolerance: 5e-2)
            XCTAssertEqual(a.violations, 0, "\(file) attention: \(a)")
            XCTAssertLessThan(a.meanRelative, 2e-2, "\(file) attention: \(a)")
            // Not float32 by accident: bf16 visibly differs from the reference.
            XCTAssertGreaterThan(r.maxDiff, 1e-4, file)
        }
    }

    /// Where the CPU lacks AVX512_BF16 (simulated here with VITLENS_CPU_NO_BF16), bf16 is refused
    /// with the reason; the CLI test checks the one-line error.
    func testRefusedWithoutTheInstructions() throws {
        if bf16Here { return }
        let ckpt = try CheckpointLoader.loadModel(path: Fixtures.checkpoint("tiny_f32.safetensors"))
        let config = try ViTConfig.infer(from: ckpt, heads: 2, imageSize: nil)
        XCTAssertThrowsError(
            try ViTEngine(weights: try ViTWeights(checkpoint: ckpt, config: config), precision: .bf16)) {
            XCTAssertTrue("\($0)".contains("AVX512_BF16") || "\($0)".contains("oneDNN"), "\($0)")
        }
    }
}

extension PrecisionTests {
    /// Attention's products (activations × activations, strided, b transposed or not) against
    /// float64 of the bf16-rounded operands.
    func testActivationProductsAgainstFloat64() throws {
        guard bf16Here else { throw XCTSkip("no AVX512_BF16 here") }
        var rng = SplitMix(state: 9)
        for (m, n, k, trans) in [
            (17, 17, 8, true), (17, 8, 17, false), (197, 197, 64, true), (197, 64, 197, false), (5, 3, 40, true)] {
            let lda = k + 3, ldb = (trans ? k : n) + 5, ldc = n + 2
            let a = (0..<(m * lda)).map { _ in rng.normal() }
            let b = (0..<((trans ? n : k) * ldb)).map { _ in rng.normal() }
            var c = [Float](repeating: .nan, count: m * ldc)
            let status = c.withUnsafeMutableBufferPointer {
                cb in vl_matmul_bf16(a, m, k, lda, b, n, ldb, trans ? 1 : 0, cb.baseAddress, ldc) }
            XCTAssertEqual(status, 0)
            let ar = bfloat16Bits(a).map { Double(Float(bitPattern: UInt32($0) << 16)) }
            let br = bfloat16Bits(b).map { Double(Float(bitPattern: UInt32($0) << 16)) }
            var worst = 0.0
            for i in 0..<m {
                for j in 0..<n {
                    var s = 0.0, mass = 0.0
                    for t in 0..<k {
                        let p = ar[i * lda + t] * (trans ? br[j * ldb + t] : br[t * ldb + j])
                        s += p
                        mass += abs(p)
                    }
                    worst = max(worst, abs(Double(c[i * ldc + j]) - s) / (mass + 1))
                }
            }
            XCTAssertLessThan(worst, 1e-6, "\(m)x\(n)x\(k) trans \(trans)")
        }
    }
}
