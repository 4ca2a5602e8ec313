import Analysis
import Checkpoint
import Foundation
import VitLensCore

/// Attention probabilities computed elsewhere, or by `vitlens extract`: a NumPy array
/// [L, N, H, T, T] (block, image, head, query, key), float32 or float16, the first
/// `prefixTokens` tokens class/register tokens and the rest a square grid of patches.
public final class AttentionFile {
    public let path: String
    public let name: String
    public let layers, images, heads, tokens, prefixTokens: Int
    /// Patches per side.
    public let grid: Int
    /// Pixels per patch, when known (an extract folder records it; `--patch-size`).
    public let patch: Int?
    let array: NpyFile
    private var buffer = Tensor(shape: [1])

    /// `prefixTokens` (and `patch`, for distances in pixels) come from the extract folder's
    /// meta.json when `path` is one; given values override it.
    public init(path: String, prefixTokens given: Int?, patch givenPatch: Int? = nil, name: String? = nil) throws {
        var npy = path, prefix = given, patch = givenPatch
        if let folder = try ExtractFolder(path, file: "attention.npy") {
            npy = folder.file
            prefix = given ?? folder.prefixTokens
            patch = givenPatch ?? folder.patchSize
        }
        self.path = npy
        self.name = name ?? modelName(path.hasSuffix(".npy") ? String(path.dropLast(4)) : path)
        self.patch = patch
        array = try NpyFile(path: npy)
        let s = array.shape
        guard s.count == 5, s[3] == s[4] else {
            throw ArrayError.attentionShape(path: npy, shape: s)
        }
        guard s.allSatisfy({ $0 > 0 }) else { throw ArrayError.emptyAxis(path: npy, shape: s) }
        (layers, images, heads, tokens) = (s[0], s[1], s[2], s[3])
        guard let prefix else { throw LensError.prefixTokensNeeded(path: npy) }
        guard prefix >= 0,
            prefix < tokens else { throw ArrayError.prefixTokens(path: npy, prefix: prefix, tokens: tokens) }
        prefixTokens = prefix
        let g = Int(Double(tokens - prefix).squareRoot().rounded())
        guard g * g == tokens - prefix else {
            throw ArrayError.notSquareGrid(path: npy, tokens: tokens, prefix: prefix)
        }
        grid = g
    }

    /// Feeds images n0..<n0+b, block by block, into the collector; checks that every value is
    /// finite and not negative and that every patch query gives its patch keys some weight.
    func feed(_ collector: AttentionCollector, from n0: Int, count b: Int) throws {
        let T = tokens, P = grid * grid, block = heads * T * T
        if buffer.count < block { buffer = Tensor(shape: [block]) }
        let p = buffer.data
        for image in 0..<b {
            for l in 0..<layers {
                try array.read((l * images + n0 + image) * block, block, into: p)
                for i in 0..<block where !(p[i] >= 0 && p[i].isFinite) {
                    throw ArrayError.notProbability(
                        path: path, value: p[i], block: l + 1, image: n0 + image, head: i / (T * T))
                }
                for h in 0..<heads {
                    for q in 0..<P {
                        let row = p + (h * T + prefixTokens + q) * T + prefixTokens
                        var s: Float = 0
                        for k in 0..<P { s += row[k] }
                        guard s > 0 else {
                            throw ArrayError.noPatchWeight(
                                path: path, query: q, head: h, block: l + 1, image: n0 + image)
                        }
                    }
                }
                collector.add(layer: l, image: image, probabilities: p)
            }
        }
    }

    public private(set) lazy var sha256: String = Digest.sha256(array.file.all)

    public var record: ArrayRecord {
        ArrayRecord(kind: .attention, name: name, path: path, sha256: sha256, dtype: array.dtype, shape: array.shape,
                    prefixTokens: prefixTokens, patchSize: patch)
    }

}
