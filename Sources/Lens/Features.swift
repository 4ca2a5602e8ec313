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
            throw LensError.data("\(npy): features must be [L, N, T, D] or [L, N, D], got \(s.count) dimensions \(formatShape(s))")
        }
        guard s.allSatisfy({ $0 > 0 }) else { throw LensError.data("\(npy): shape \(formatShape(s)) has an empty axis") }
        (layers, images) = (s[0], s[1])
        (tokens, channels) = s.count == 4 ? (s[2], s[3]) : (1, s[2])
        if s.count == 4 {
            guard let prefix else { throw LensError.prefixTokensNeeded(path: npy) }
            guard prefix >= 0, prefix < tokens else { throw LensError.data("\(npy): \(prefix) prefix tokens, but only \(tokens) tokens per image") }
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
            throw LensError.data("\(path): non-finite value \(out[i]) in layer \(l), image \(n0 + i / (tokens * channels))")
        }
        return UnsafePointer(out)
    }

    /// Each layer's Gram matrix of images n0..<n0+b.
    func grams(from n0: Int, count b: Int, selection: TokenSelection, scratch: inout [Float]) throws -> [Gram] {
        try (0..<layers).map { l in
            let x = try slice(layer: l, from: n0, count: b)
            return Gram.of(x, batch: b, tokens: tokens, channels: channels, prefix: prefixTokens, selection: selection, scratch: &scratch)
        }
    }

    /// SHA-256 of the file (computed once; it reads the whole file).
    public private(set) lazy var sha256: String = Digest.sha256(array.file.all)

    public var json: JSONValue {
        .object([("name", .string(name)), ("features", .string(path)), ("sha256", .string(sha256)),
                 ("dtype", .string(array.dtype)), ("shape", .array(array.shape.map { .int($0) })),
                 ("prefix_tokens", .int(prefixTokens))])
    }
}

/// A folder written by `vitlens extract`: one of its arrays, and what meta.json says of it.
struct ExtractFolder {
    let file: String
    let meta: JSONValue
    /// Leading class/register tokens of the array's token axis.
    let prefixTokens: Int

    /// nil when `path` is not a folder; an error when it is one without the extract's meta.json.
    init?(_ path: String, file name: String) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else { return nil }
        guard let data = FileManager.default.contents(atPath: path + "/meta.json"),
              let meta = try? JSONValue.parse(String(decoding: data, as: UTF8.self)),
              let p = meta[path: "architecture", "prefix_tokens"]?.intValue else {
            throw LensError.data("\(path): not a folder written by vitlens extract (no meta.json with architecture.prefix_tokens)")
        }
        guard meta[path: "files", name, "shape"] != nil else {
            throw LensError.data("\(path): the extract wrote no \(name)\(name == "attention.npy" ? " (it ran with --no-attention)" : "")")
        }
        self.file = path + "/" + name
        self.meta = meta
        prefixTokens = meta[path: "files", name, "prefix_tokens"]?.intValue ?? p
    }
}

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
            patch = givenPatch ?? folder.meta[path: "architecture", "patch_size"]?.intValue
        }
        self.path = npy
        self.name = name ?? modelName(path.hasSuffix(".npy") ? String(path.dropLast(4)) : path)
        self.patch = patch
        array = try NpyFile(path: npy)
        let s = array.shape
        guard s.count == 5, s[3] == s[4] else {
            throw LensError.data("\(npy): attention must be [L, N, H, T, T] (block, image, head, query, key), got \(formatShape(s))")
        }
        guard s.allSatisfy({ $0 > 0 }) else { throw LensError.data("\(npy): shape \(formatShape(s)) has an empty axis") }
        (layers, images, heads, tokens) = (s[0], s[1], s[2], s[3])
        guard let prefix else { throw LensError.prefixTokensNeeded(path: npy) }
        guard prefix >= 0, prefix < tokens else { throw LensError.data("\(npy): \(prefix) prefix tokens, but only \(tokens) tokens per image") }
        prefixTokens = prefix
        let g = Int(Double(tokens - prefix).squareRoot().rounded())
        guard g * g == tokens - prefix else {
            throw LensError.data("\(npy): \(tokens) tokens less \(prefix) prefix tokens leave \(tokens - prefix) patches, not a square grid")
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
                    throw LensError.data("\(path): \(p[i]) is not a probability (block \(l + 1), image \(n0 + image), head \(i / (T * T)))")
                }
                for h in 0..<heads {
                    for q in 0..<P {
                        let row = p + (h * T + prefixTokens + q) * T + prefixTokens
                        var s: Float = 0
                        for k in 0..<P { s += row[k] }
                        guard s > 0 else {
                            throw LensError.data("\(path): patch query \(q) of head \(h), block \(l + 1), image \(n0 + image) gives the patch keys no weight")
                        }
                    }
                }
                collector.add(layer: l, image: image, probabilities: p)
            }
        }
    }

    public private(set) lazy var sha256: String = Digest.sha256(array.file.all)

    public var json: JSONValue {
        .object([("name", .string(name)), ("attention", .string(path)), ("sha256", .string(sha256)),
                 ("dtype", .string(array.dtype)), ("shape", .array(array.shape.map { .int($0) })),
                 ("prefix_tokens", .int(prefixTokens)), ("patch_size", patch.map { .int($0) } ?? .null)])
    }
}
