import Checkpoint
import Engine
import Families
import Foundation
import TestSupport
@testable import Train
import VitLensCore
import XCTest

/// Every backward kernel against central finite differences of its float32 forward (the loss
/// accumulated in float64), step h = 5e−3. Tolerances, stated for float32, as
/// ‖analytic − numeric‖ / ‖numeric‖: ≤ 3e−4 for each kernel (measured ≤ 5e−5) and ≤ 2e−3 for
/// the whole model end to end (float32 noise through two blocks; measured ≤ 6e−4).
final class GradientTests: XCTestCase {
    var rng = SplitMix64(seed: 11)

    func random(_ shape: [Int], scale: Float = 1) -> Tensor {
        let t = Tensor(shape: shape)
        for i in 0..<t.count { t[i] = Float(rng.uniform() * 2 - 1) * scale }
        return t
    }

    /// ‖a − b‖ / ‖b‖.
    func relErr(_ a: [Double], _ b: [Double]) -> Double {
        var num = 0.0, den = 0.0
        for i in 0..<a.count { num += (a[i] - b[i]) * (a[i] - b[i]); den += b[i] * b[i] }
        return (num / max(den, 1e-30)).squareRoot()
    }

    /// Central differences of `loss` with respect to every element of `t` (or `sample` of them).
    func numeric(_ t: Tensor, sample: [Int]? = nil, h: Float = 5e-3, _ loss: () -> Double) -> [Double] {
        (sample ?? Array(0..<t.count)).map { i in
            let v = t[i]
            t[i] = v + h; let up = loss()
            t[i] = v - h; let down = loss()
            t[i] = v
            return (up - down) / Double(2 * h)
        }
    }

    func weighted(_ y: UnsafePointer<Float>, _ w: Tensor) -> Double {
        var s = 0.0
        for i in 0..<w.count { s += Double(y[i]) * Double(w[i]) }
        return s
    }

    func check(
        _ name: String, _ analytic: [Double], _ numeric: [Double], tolerance: Double = 3e-4, line: UInt = #line) {
        let e = relErr(analytic, numeric)
        if ProcessInfo.processInfo.environment["VITLENS_PRINT_GRADCHECK"] != nil { print("gradcheck \(name): \(e)") }
        XCTAssertLessThanOrEqual(
            e, tolerance, "\(name): relative error \(e); analytic \(analytic.prefix(4)), numeric \(numeric.prefix(4))",
            line: line)
    }

    func testLinear() {
        let R = 7, K = 5, N = 3
        let x = random([R, K]), w = random([N, K]), b = random([N]), dy = random([R, N])
        let y = Tensor(shape: [R, N])
        let loss = { Linear.forward(y.data, x.data, w, b, rows: R); return self.weighted(y.data, dy) }
        let dx = Tensor(shape: [R, K]), dw = Tensor(shape: [N, K]), db = Tensor(shape: [N])
        Linear.backward(dx: dx.data, dw: dw, db: db, dy: dy.data, x: x.data, w: w, rows: R)
        check("linear dx", dx.array.map(Double.init), numeric(x, loss))
        check("linear dW", dw.array.map(Double.init), numeric(w, loss))
        check("linear db", db.array.map(Double.init), numeric(b, loss))
    }

    func testLayerNorm() {
        let R = 6, C = 12
        let x = random([R, C], scale: 2), w = random([C]), b = random([C]), dy = random([R, C])
        let y = Tensor(shape: [R, C]), stats = Tensor(shape: [2, R])
        let loss = {
            LayerNorm.forward(
            y.data, mean: stats.data, rstd: stats.data + R, x.data, w, b, rows: R, eps: 1e-6); return self.weighted(
            y.data, dy) }
        _ = loss()
        let dx = Tensor(shape: [R, C]), dw = Tensor(shape: [C]), db = Tensor(shape: [C])
        LayerNorm.backward(
            dx: dx.data, dw: dw, db: db, dy: dy.data, x: x.data, mean: stats.data, rstd: stats.data + R, w: w, rows: R,
            accumulate: false)
        check("layernorm dx", dx.array.map(Double.init), numeric(x, loss))
        check("layernorm dw", dw.array.map(Double.init), numeric(w, loss))
        check("layernorm db", db.array.map(Double.init), numeric(b, loss))
        // accumulate: adds onto what is there.
        let before = Tensor(shape: [R, C]); before.fill(1)
        LayerNorm.backward(
            dx: before.data, dw: dw, db: db, dy: dy.data, x: x.data, mean: stats.data, rstd: stats.data + R, w: w,
            rows: R, accumulate: true)
        for i in 0..<before.count { XCTAssertEqual(before[i], 1 + dx[i], accuracy: 1e-6) }
    }

    /// Exact GELU, CLIP's QuickGELU and SigLIP's tanh GELU.
    func testActivations() {
        let n = 40
        for kind in [ViTConfig.Activation.gelu, .quickGelu, .geluTanh] {
            let x = random([n], scale: 3), dy = random([n]), y = Tensor(shape: [n])
            let loss = { Activation.forward(kind, y.data, x.data, count: n); return self.weighted(y.data, dy) }
            let dx = Tensor(shape: [n])
            Activation.backward(kind, dx: dx.data, dy: dy.data, x: x.data, count: n)
            check("\(kind) dx", dx.array.map(Double.init), numeric(x, loss))
        }
    }

    /// Awkward shapes: 3 images, 5 tokens, 2 heads of 3.
    func testSelfAttention() {
        let B = 3, T = 5, H = 2, C = 6
        let qkv = random([B, T, 3 * C], scale: 1.5), dy = random([B, T, C])
        let out = Tensor(shape: [B, T, C]), probs = Tensor(shape: [B, H, T, T])
        let loss = {
            SelfAttention.forward(
            out.data, probs: probs.data, qkv: qkv.data, batch: B, tokens: T, heads: H, dim: C); return self.weighted(
            out.data, dy) }
        _ = loss()
        let dqkv = Tensor(shape: [B, T, 3 * C]), scratch = Tensor(shape: [B, T, T])
        SelfAttention.backward(
            dqkv: dqkv.data, dout: dy.data, qkv: qkv.data, probs: probs.data, scratch: scratch.data, batch: B,
            tokens: T, heads: H, dim: C)
        check("attention dqkv", dqkv.array.map(Double.init), numeric(qkv, loss))
        // With a bias on the logits (BEiT's relative position bias): dS is the bias's gradient.
        let bias = random([H, T, T], scale: 2), dS = Tensor(shape: [B, H, T, T])
        let biased = {
            SelfAttention.forward(
            out.data, probs: probs.data, qkv: qkv.data, batch: B, tokens: T, heads: H, dim: C, bias: bias.data)
                       return self.weighted(out.data, dy) }
        _ = biased()
        SelfAttention.backward(
            dqkv: dqkv.data, dout: dy.data, qkv: qkv.data, probs: probs.data, scratch: scratch.data, batch: B,
            tokens: T,
                               heads: H, dim: C, dlogits: dS.data)
        check("biased attention dqkv", dqkv.array.map(Double.init), numeric(qkv, biased))
        let dBias = (0..<(H * T * T)).map { k in (0..<B).reduce(0.0) { $0 + Double(dS[($1 * H * T * T) + k]) } }
        check("attention dbias", dBias, numeric(bias, biased))
    }

    func testCrossEntropy() {
        let B = 4, K = 5
        let z = random([B, K], scale: 3), d = Tensor(shape: [B, K]), labels = [0, 3, 4, 3]
        let loss = { CrossEntropy.forwardBackward(z.data, labels: labels, classes: K, dlogits: d.data).loss }
        _ = loss()
        let analytic = d.array.map(Double.init)
        check("cross-entropy dlogits", analytic, numeric(z, loss))
    }

    func model(keep: Int, pooling: ProbePooling, file: String = "tiny_f32.safetensors") throws -> TrainableViT {
        let (ckpt, cfg) = try fixtureModel(file)
        return TrainableViT(
            weights: try ViTWeights(checkpoint: ckpt, config: cfg), keep: keep, classes: 3, pooling: pooling, seed: 1)
    }

    /// One full block (and then the whole 2-block model) end to end: patch embedding, positions,
    /// class token, norms, attention, MLP, final norm, pooling, head and loss.
    func testWholeModelEndToEnd() throws {
        try endToEnd("tiny_f32.safetensors", [(1, .mean), (2, .cls)])
    }

    /// Every family end to end: LayerScale (DeiT III, with no position row for the class token),
    /// DINOv2 with registers (their position rows frozen at 0), CLIP (ln_pre, QuickGELU, no patch
    /// bias), SigLIP (no class token, tanh GELU), BEiT (q/v biases, a relative position table per
    /// block, LayerScale, no absolute positions) and BEiT with a shared table.
    func testEveryFamilyEndToEnd() throws {
        for file in [
            "family_deit3.safetensors", "family_dinov2reg.safetensors", "family_clip.safetensors",
            "family_siglip.safetensors",
                     "family_beit.safetensors", "family_beitshared.safetensors", "family_rpe.safetensors",
                     "family_ropevit.safetensors", "family_dinov3.safetensors",
                     "family_ropereggap.safetensors"] + fixtures2025 {
            try endToEnd(file, [(2, ["siglip", "reggap", "aimv2"].contains { file.contains($0) } ? .mean : .cls)])
        }
    }

    func endToEnd(_ file: String, _ runs: [(Int, ProbePooling)]) throws {
        for (keep, pooling) in runs {
            let m = try model(keep: keep, pooling: pooling, file: file)
            // A larger head than the σ = 2e−5 initialisation, so every gradient is well above noise.
            for i in 0..<m.headW.value.count { m.headW.value[i] = Float(rng.uniform() * 2 - 1) }
            let x = random([2, 3, 32, 32]), labels = [2, 0]
            let loss = { () -> Double in m.forward(x); return m.backward(labels: labels).loss }
            m.forward(x)
            _ = m.backward(labels: labels)
            let grads = m.parameters.map { $0.grad.array.map(Double.init) }
            for (p, g) in zip(m.parameters, grads) where !p.frozen {
                var r = SplitMix64(seed: UInt64(p.name.utf8.count))
                // Small tensors whole (a relative position table: with cls pooling the last block's
                // gradient lives in a few rows); rows held fixed (positions of prefix tokens that
                // have none) are not sampled.
                // The k slice of a q/v-bias model's qkv bias is held at 0 (a buffer in timm): with
                // rotary positions it would move the loss, but it is not a parameter.
                let c = m.config
                let fixed = p === m.pos ? (c.positionSlots * c.dim)..<(c.prefixTokens * c.dim)
                    : !c.keyBias && p.name.hasSuffix("attn.qkv.bias") ? c.dim..<(2 * c.dim) : 0..<0
                let sample = p.value.count <= 128 ? Array(0..<p.value.count).filter { !fixed.contains($0) }
                    : (0..<24).map { _ in Int(r.next() % UInt64(p.value.count - fixed.count)) }.map {
                        $0 < fixed.lowerBound ? $0 : $0 + fixed.count }
                // Relative position tables get small gradients: a wider step keeps float32's rounding
                // of the loss below the tolerance (the error falls as 1/h, measured 2e-2: ≤ 1.1e-3).
                let n = numeric(
                    p.value, sample: sample, h: p.name.hasSuffix("relative_position_bias_table") ? 2e-2 : 5e-3, loss)
                check("\(file) keep \(keep) \(pooling): \(p.name)", sample.map { g[$0] }, n, tolerance: 2e-3)
            }
            // What must not move has no gradient: BEiT's k bias, the registers' position rows.
            let c = m.config
            if !c.keyBias {
                XCTAssertTrue(
                m.blocks.allSatisfy { p in (c.dim..<(2 * c.dim)).allSatisfy { p.qkvB.grad[$0] == 0 } }, file) }
            if c.absolutePositions && c.positionSlots < c.prefixTokens {
                XCTAssertTrue(
                    (c.positionSlots * c.dim..<(c.prefixTokens * c.dim)).allSatisfy { m.pos.grad[$0] == 0 }, file)
            }
        }
    }
}
