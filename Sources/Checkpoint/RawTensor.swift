import KernelsAVX2
import VitLensCore

/// Element types a checkpoint may hold. Only the floating ones can be weights.
public enum DType: String, Sendable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", f64 = "F64"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"

    public var size: Int {
        switch self {
        case .f64, .i64: return 8
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        case .i8, .u8, .bool: return 1
        }
    }

    public var isFloat: Bool { self == .f32 || self == .f16 || self == .bf16 || self == .f64 }
}

/// A tensor as stored in a checkpoint: dtype, shape, and where its elements are.
/// Mapped tensors read straight from the file's memory map; nothing is copied until
/// `floats()` converts them to float32.
public struct RawTensor {
    public let dtype: DType
    public let shape: [Int]
    enum Storage {
        /// `strides` in elements; `offset` is the byte offset of element 0 in `file`.
        case mapped(file: MappedFile, offset: Int, strides: [Int])
        case owned([Float])
    }
    let storage: Storage

    public var count: Int { shape.reduce(1, *) }

    init(dtype: DType, shape: [Int], file: MappedFile, offset: Int, strides: [Int]? = nil) {
        self.dtype = dtype
        self.shape = shape
        self.storage = .mapped(file: file, offset: offset, strides: strides ?? contiguousStrides(shape))
    }

    public init(shape: [Int], floats: [Float]) {
        dtype = .f32
        self.shape = shape
        storage = .owned(floats)
    }

    /// The elements in row-major order as float32. Throws for integer tensors.
    public func floats(name: String) throws -> [Float] {
        switch storage {
        case let .owned(v): return v
        case let .mapped(file, offset, strides):
            guard dtype.isFloat else {
                throw CheckpointError.unknownDType(
                    path: file.path, tensor: name, dtype: dtype.rawValue + " (not a float type)")
            }
            var out = [Float](repeating: 0, count: count)
            guard count > 0 else { return out }
            let base = file.all.baseAddress!.advanced(by: offset)
            let contiguous = strides == contiguousStrides(shape)
            out.withUnsafeMutableBufferPointer { dst in
                if contiguous {
                    convert(base, dtype, 0, count, dst.baseAddress!)
                } else {
                    // Gather through the strides (bounds were checked when the tensor was built).
                    forEachElement(strides: strides) { i, e in convert(base, dtype, e, 1, dst.baseAddress! + i) }
                }
            }
            return out
        }
    }
}

extension RawTensor {
    /// body(i, e) for every element in row-major order: i its position, e its offset in elements
    /// through `strides`.
    func forEachElement(strides: [Int], _ body: (Int, Int) -> Void) {
        var index = [Int](repeating: 0, count: shape.count)
        for i in 0..<count {
            var e = 0
            for d in 0..<shape.count { e += index[d] * strides[d] }
            body(i, e)
            var d = shape.count - 1
            while d >= 0 {
                index[d] += 1
                if index[d] < shape[d] { break }
                index[d] = 0
                d -= 1
            }
        }
    }

    /// The values of an integer tensor (BEiT's stored relative position index), in row-major order.
    public func integers(name: String) throws -> [Int] {
        switch storage {
        case let .owned(v): return v.map { Int($0) }
        case let .mapped(file, offset, strides):
            let size: Int
            switch dtype {
            case .i64: size = 8
            case .i32: size = 4
            case .i16: size = 2
            case .i8, .u8: size = 1
            default: throw CheckpointError.unknownDType(
                path: file.path, tensor: name, dtype: dtype.rawValue + " (not an integer type)")
            }
            let base = file.all.baseAddress!.advanced(by: offset)
            var out = [Int](repeating: 0, count: count)
            forEachElement(strides: strides) { i, e in
                let p = base + e * size
                switch dtype {
                case .i64: out[i] = Int(Int64(littleEndian: p.loadUnaligned(as: Int64.self)))
                case .i32: out[i] = Int(Int32(littleEndian: p.loadUnaligned(as: Int32.self)))
                case .i16: out[i] = Int(Int16(littleEndian: p.loadUnaligned(as: Int16.self)))
                case .i8: out[i] = Int(p.load(as: Int8.self))
                default: out[i] = Int(p.load(as: UInt8.self))
                }
            }
            return out
        }
    }
}

func contiguousStrides(_ shape: [Int]) -> [Int] {
    var s = [Int](repeating: 1, count: shape.count)
    var acc = 1
    for d in stride(from: shape.count - 1, through: 0, by: -1) {
        s[d] = acc
        acc *= shape[d]
    }
    return s
}

/// Converts `n` elements starting at element `first` of `base` to float32.
private func convert(
    _ base: UnsafeRawPointer, _ dtype: DType, _ first: Int, _ n: Int, _ dst: UnsafeMutablePointer<Float>) {
    switch dtype {
    case .f32:
        for i in 0..<n {
            dst[i] = Float(bitPattern: (base + 4 * (first + i)).loadUnaligned(as: UInt32.self).littleEndian) }
    case .f16:
        if CPUKernels.avx2 { halfToFloatAVX2(base + 2 * first, dst, n); return }
        for i in 0..<n {
            dst[i] = Float(Float16(bitPattern: (base + 2 * (first + i)).loadUnaligned(as: UInt16.self).littleEndian)) }
    case .bf16:
        for i in 0..<n {
            let bits = UInt32((base + 2 * (first + i)).loadUnaligned(as: UInt16.self).littleEndian) << 16
            dst[i] = Float(bitPattern: bits)
        }
    case .f64:
        for i in 0..<n {
            dst[i] = Float(Double(bitPattern: (base + 8 * (first + i)).loadUnaligned(as: UInt64.self).littleEndian)) }
    default:
        for i in 0..<n { dst[i] = .nan }
    }
}

/// Checked arithmetic for sizes read from files: nil on overflow or negative input.
func checkedProduct(_ xs: [Int]) -> Int? {
    var p = 1
    for x in xs {
        guard x >= 0 else { return nil }
        let (r, o) = p.multipliedReportingOverflow(by: x)
        if o { return nil }
        p = r
    }
    return p
}
