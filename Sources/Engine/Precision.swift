import BF16
import Foundation
import VitLensCore

/// The arithmetic of the engine's products.
public enum Precision: String, Sendable, CaseIterable {
    /// float32 throughout (OpenBLAS sgemm, vitlens's AVX2 attention kernels): the reference.
    case f32
    /// The linear layers with bfloat16 weights and inputs, and attention's q·kᵀ and P·V with
    /// bfloat16 operands, accumulating in float32 (oneDNN's matmul on AVX512_BF16); LayerNorm,
    /// softmax, GELU and everything after stay float32/float64.
    case bf16

    /// Why bf16 cannot run here (nil: it can): the CPU's instructions, then oneDNN.
    public static var bf16Unavailable: String? {
        var why = [CChar](repeating: 0, count: 256)
        return vl_bf16_load(&why, Int32(why.count)) == 0 ? nil : String(cString: why)
    }

    /// The oneDNN kernel bf16 runs on (after a bf16 engine was made).
    public static var bf16Implementation: String { String(cString: vl_bf16_implementation()) }
}

/// float32 → bfloat16 bits, rounded to nearest even (NaN stays NaN).
public func bfloat16Bits(_ x: [Float]) -> [UInt16] {
    var out = [UInt16](repeating: 0, count: x.count)
    x.withUnsafeBufferPointer {
        s in out.withUnsafeMutableBufferPointer { vl_to_bf16(s.baseAddress, $0.baseAddress, x.count) } }
    return out
}

/// One linear layer's weight W (n, k), held in bfloat16 in oneDNN's layout.
final class PackedLinear {
    private let handle: OpaquePointer
    let n, k: Int

    init(_ w: Tensor) throws {
        precondition(w.shape.count == 2, "a linear weight is (out, in)")
        (n, k) = (w.shape[0], w.shape[1])
        var why = [CChar](repeating: 0, count: 256)
        guard let h = vl_linear_create(w.data, n, k, &why, Int32(why.count)) else {
            throw EngineError.precision("--precision bf16: " + String(cString: why))
        }
        handle = h
    }

    deinit { vl_linear_destroy(handle) }

    /// y (rows, n), rows `ldy` apart: y = x·Wᵀ (+ b), or with `accumulate` y += x·Wᵀ (+ b).
    /// false when oneDNN failed.
    func forward(_ y: UnsafeMutablePointer<Float>, ldy: Int, _ x: UnsafePointer<Float>, ldx: Int, rows: Int,
                 bias: UnsafePointer<Float>?, accumulate: Bool) -> Bool {
        vl_linear_forward(handle, x, rows, ldx, y, ldy, bias, accumulate ? 1 : 0) == 0
    }
}

/// A block's linear layers in bf16.
final class PackedBlock {
    let qkv, proj, fc1, fc2: PackedLinear
    init(_ b: BlockWeights) throws {
        (qkv, proj, fc1, fc2) = (
            try PackedLinear(b.qkvW), try PackedLinear(b.projW), try PackedLinear(b.fc1W), try PackedLinear(b.fc2W))
    }
}
