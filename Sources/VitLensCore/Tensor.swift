import Foundation

// Shape letters used throughout vitlens (habit: define once, document at birth and use):
//   B batch, T tokens (prefix tokens + patches), C channels (embed dim), H heads,
//   D head dim (C / H), L depth (number of blocks), N images, P patches, F MLP width.

/// A dense, contiguous, row-major float32 tensor that owns 64-byte-aligned storage.
public final class Tensor {
    public let shape: [Int]
    public let count: Int
    public let data: UnsafeMutablePointer<Float>

    /// Zero-initialised tensor of the given shape.
    public init(shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension")
        self.shape = shape
        self.count = shape.reduce(1, *)
        var raw: UnsafeMutableRawPointer?
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        guard posix_memalign(&raw, 64, bytes) == 0, let raw else {
            fatalError("out of memory allocating \(bytes) bytes")
        }
        memset(raw, 0, bytes)
        data = raw.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    public convenience init(shape: [Int], values: [Float]) {
        self.init(shape: shape)
        precondition(values.count == count, "values do not match shape \(shape)")
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
    }

    deinit { free(data) }

    public var buffer: UnsafeMutableBufferPointer<Float> { .init(start: data, count: count) }
    public var array: [Float] { Array(buffer) }

    public subscript(_ i: Int) -> Float {
        get { data[i] }
        set { data[i] = newValue }
    }

    /// The number of elements after the first axis (one "row" of the leading dimension).
    public var rowCount: Int { shape.isEmpty ? 1 : count / max(shape[0], 1) }

    public func copy() -> Tensor {
        let t = Tensor(shape: shape)
        t.data.update(from: data, count: count)
        return t
    }

    public func fill(_ v: Float) { data.update(repeating: v, count: count) }
}

public func formatShape(_ shape: [Int]) -> String {
    "[" + shape.map(String.init).joined(separator: ", ") + "]"
}

extension Array where Element == [Float] {
    /// Calls body with a pointer to each array's storage (valid only inside body).
    public func withPointers<R>(_ body: ([UnsafePointer<Float>]) throws -> R) rethrows -> R {
        func go(_ i: Int, _ acc: [UnsafePointer<Float>]) throws -> R {
            if i == count { return try body(acc) }
            return try self[i].withUnsafeBufferPointer { try go(i + 1, acc + [$0.baseAddress!]) }
        }
        return try go(0, [])
    }
}
