import Foundation
import VitLensCore

/// One layer's per-image vectors, float32 (N × D, row-major), for the measures that need every
/// image at once (`rbf-cka`, `mknn`, `rsa`).
public struct LayerVectors {
    public let rows: Int, dim: Int
    public let values: [Float]
    public init(rows: Int, dim: Int, values: [Float]) {
        precondition(values.count == rows * dim)
        (self.rows, self.dim, self.values) = (rows, dim, values)
    }
    var doubles: [Double] { values.map(Double.init) }
}

/// Every image's vector of each layer of one side, read a layer or a range of rows at a time, so
/// that N × L × D floats need not be resident (a scratch file holds them in a long run).
public protocol LayerStore {
    /// N, the images.
    var rows: Int { get }
    /// Each layer's width.
    var dims: [Int] { get }
    /// Rows r of layer l (r.count × dims[l] floats) into `out`.
    func read(_ l: Int, rows r: Range<Int>, into out: UnsafeMutablePointer<Float>) throws
}

extension LayerStore {
    public var layerCount: Int { dims.count }

    /// The whole of layer l.
    public func layer(_ l: Int) throws -> LayerVectors {
        let d = dims[l]
        var v = [Float](repeating: 0, count: rows * d)
        try v.withUnsafeMutableBufferPointer { try read(l, rows: 0..<rows, into: $0.baseAddress!) }
        return LayerVectors(rows: rows, dim: d, values: v)
    }
}

/// Layers held in memory.
public struct HeldLayers: LayerStore {
    public let layers: [LayerVectors]
    public init(_ layers: [LayerVectors]) {
        precondition(Set(layers.map(\.rows)).count <= 1)
        self.layers = layers
    }
    public var rows: Int { layers.first?.rows ?? 0 }
    public var dims: [Int] { layers.map(\.dim) }
    public func read(_ l: Int, rows r: Range<Int>, into out: UnsafeMutablePointer<Float>) throws {
        let d = layers[l].dim
        layers[l].values.withUnsafeBufferPointer { v in
            out.update(from: v.baseAddress! + r.lowerBound * d, count: r.count * d)
        }
    }
}

/// A bootstrap resample of a store: row i is the store's row index[i].
public struct ResampledLayers: LayerStore {
    public let base: LayerStore
    public let index: [Int]
    public init(_ base: LayerStore, index: [Int]) { (self.base, self.index) = (base, index) }
    public var rows: Int { index.count }
    public var dims: [Int] { base.dims }
    public func read(_ l: Int, rows r: Range<Int>, into out: UnsafeMutablePointer<Float>) throws {
        let d = dims[l]
        for (k, i) in r.enumerated() { try base.read(l, rows: index[i]..<(index[i] + 1), into: out + k * d) }
    }
}
