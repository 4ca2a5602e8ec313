import Analysis
import Checkpoint
import Foundation
import VitLensCore

/// Features computed elsewhere, for CKA: a NumPy array [L, N, T, D] (tokens, the first
/// `prefixTokens` of them class/register tokens) or [L, N, D] (one vector per image), float32 or
/// float16, little-endian, C order — or a folder written by `vitlens extract` (its features.npy,
/// its meta.json giving the prefix count). Memory-mapped; read one minibatch at a time.
public final class FeatureFile {
    public let path: String
    public let name: String
    /// L (layers), N (images), T (tokens; 1 for [L, N, D]), D (channels).
    public let layers, images, tokens, channels: Int
    public let prefixTokens: Int
    let array: NpyFile
    var rank: Int { array.shape.count }
    /// One minibatch of one layer as float32, reused (stable storage: a Tensor).
    private var buffer = Tensor(shape: [1])

    /// `prefixTokens` is required for a 4-D array unless `path` is an extract folder.
    public init(path: String, prefixTokens given: Int?, name: String? = nil) throws {
        var npy = path, prefix = given
        if let folder = try ExtractFolder(path, file: "features.npy") {
            npy = folder.file
            prefix = given ?? folder.prefixTokens
        }
        self.path = npy
        self.name = name ?? modelName(path.hasSuffix(".npy") ? String(path.dropLast(4)) : path)
        array = try NpyFile(path: npy)
        let s = array.shape
        guard s.count == 3 || s.count == 4 else {
            throw ArrayError.featureRank(path: npy, shape: s)
        }
        guard s.allSatisfy({ $0 > 0 }) else { throw ArrayError.emptyAxis(path: npy, shape: s) }
        (layers, images) = (s[0], s[1])
        (tokens, channels) = s.count == 4 ? (s[2], s[3]) : (1, s[2])
        if s.count == 4 {
            guard let prefix else { throw LensError.prefixTokensNeeded(path: npy) }
            guard prefix >= 0,
                prefix < tokens else { throw ArrayError.prefixTokens(path: npy, prefix: prefix, tokens: tokens) }
            prefixTokens = prefix
        } else {
            prefixTokens = 0
        }
    }

    /// Layer `l` of images n0..<n0+b as float32 (B, T, D); checked finite.
    func slice(layer l: Int, from n0: Int, count b: Int) throws -> UnsafePointer<Float> {
        let n = b * tokens * channels, first = (l * images + n0) * tokens * channels
        if buffer.count < n { buffer = Tensor(shape: [n]) }
        let out = buffer.data
        try array.read(first, n, into: out)
        for i in 0..<n where !out[i].isFinite {
            throw ArrayError.nonFinite(path: path, value: out[i], layer: l, image: n0 + i / (tokens * channels))
        }
        return UnsafePointer(out)
    }

    /// Each layer's Gram matrix of images n0..<n0+b.
    func grams(from n0: Int, count b: Int, selection: TokenSelection, scratch: inout [Float]) throws -> [Gram] {
        try (0..<layers).map { l in
            let x = try slice(layer: l, from: n0, count: b)
            return Gram.of(
                x, batch: b, tokens: tokens, channels: channels, prefix: prefixTokens, selection: selection,
                scratch: &scratch)
        }
    }

    /// SHA-256 of the file (computed once; it reads the whole file).
    public private(set) lazy var sha256: String = Digest.sha256(array.file.all)

    public var record: ArrayRecord {
        ArrayRecord(kind: .features, name: name, path: path, sha256: sha256, dtype: array.dtype, shape: array.shape,
                    prefixTokens: prefixTokens)
    }

}
