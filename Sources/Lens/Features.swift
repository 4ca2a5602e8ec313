import Analysis
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
    let half: Bool
    let file: MappedFile
    let dataOffset: Int
    let rank: Int
    /// One minibatch of one layer as float32, reused (stable storage: a Tensor).
    private var buffer = Tensor(shape: [1])

    /// `prefixTokens` is required for a 4-D array unless `path` is an extract folder.
    public init(path: String, prefixTokens given: Int?, name: String? = nil) throws {
        var isDir: ObjCBool = false
        var npy = path, prefix = given
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            npy = path + "/features.npy"
            guard let data = FileManager.default.contents(atPath: path + "/meta.json"),
                  let meta = try? JSONValue.parse(String(decoding: data, as: UTF8.self)),
                  let p = meta[path: "files", "features.npy", "prefix_tokens"]?.intValue ?? meta[path: "architecture", "prefix_tokens"]?.intValue else {
                throw LensError.data("\(path): not a folder written by vitlens extract (no meta.json with architecture.prefix_tokens)")
            }
            if meta[path: "files", "features.npy", "shape"] == nil { throw LensError.data("\(path)/meta.json: no features.npy shape") }
            prefix = given ?? p
        }
        self.path = npy
        self.name = name ?? modelName(path.hasSuffix(".npy") ? String(path.dropLast(4)) : path)
        file = try MappedFile(path: npy)
        let h = try FeatureFile.header(file, path: npy)
        half = h.half
        dataOffset = h.offset
        let s = h.shape
        guard s.count == 3 || s.count == 4 else {
            throw LensError.data("\(npy): features must be [L, N, T, D] or [L, N, D], got \(s.count) dimensions \(formatShape(s))")
        }
        guard s.allSatisfy({ $0 > 0 && $0 < 1 << 31 }) else { throw LensError.data("\(npy): shape \(formatShape(s)) has an empty or absurd axis") }
        (layers, images, rank) = (s[0], s[1], s.count)
        (tokens, channels) = s.count == 4 ? (s[2], s[3]) : (1, s[2])
        var total = (h.half ? 2 : 4)
        for d in s { let (m, o) = total.multipliedReportingOverflow(by: d); guard !o else { throw LensError.data("\(npy): shape \(formatShape(s)) overflows") }; total = m }
        guard dataOffset + total <= file.count else {
            throw LensError.data("\(npy): shape \(formatShape(s)) needs \(total) bytes of data, the file holds \(file.count - dataOffset)")
        }
        if s.count == 4 {
            guard let prefix else { throw LensError.prefixTokensNeeded(path: npy) }
            guard prefix >= 0, prefix < tokens else { throw LensError.data("\(npy): \(prefix) prefix tokens, but only \(tokens) tokens per image") }
            prefixTokens = prefix
        } else {
            prefixTokens = 0
        }
    }

    /// The array's header: dtype, shape, where the data starts. Strict: anything but a
    /// little-endian float32/float16 C-order array is refused.
    static func header(_ file: MappedFile, path: String) throws -> (half: Bool, shape: [Int], offset: Int) {
        guard let magic = file.bytes(at: 0, count: 10), Array(magic.prefix(6)) == [0x93] + Array("NUMPY".utf8) else {
            throw LensError.data("\(path): not a NumPy .npy file")
        }
        let major = Int(magic[6])
        let lenBytes = major == 1 ? 2 : 4
        guard major >= 1 && major <= 3, let lb = file.bytes(at: 8, count: lenBytes) else { throw LensError.data("\(path): unknown .npy version \(major)") }
        let hlen = lb.enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let start = 8 + lenBytes
        guard let hb = file.bytes(at: start, count: hlen) else { throw LensError.data("\(path): .npy header runs past the end of the file") }
        let text = String(decoding: hb, as: UTF8.self)
        func field(_ key: String) -> String? {
            guard let r = text.range(of: "'\(key)':") else { return nil }
            return String(text[r.upperBound...]).trimmingCharacters(in: .whitespaces)
        }
        guard let descr = field("descr"), let order = field("fortran_order"), let shapeText = field("shape") else {
            throw LensError.data("\(path): .npy header lacks descr, fortran_order or shape")
        }
        let half: Bool
        if descr.hasPrefix("'<f4'") { half = false } else if descr.hasPrefix("'<f2'") { half = true } else {
            throw LensError.data("\(path): dtype \(descr.prefix(while: { $0 != "," })) is not supported (float32 or float16, little-endian)")
        }
        guard order.hasPrefix("False") else { throw LensError.data("\(path): Fortran-order arrays are not supported (save with C order)") }
        guard shapeText.hasPrefix("("), let close = shapeText.firstIndex(of: ")") else { throw LensError.data("\(path): malformed shape in the .npy header") }
        let dims = shapeText[shapeText.index(after: shapeText.startIndex)..<close].split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let shape = try dims.map { d -> Int in
            guard let v = Int(d) else { throw LensError.data("\(path): malformed shape in the .npy header") }
            return v
        }
        return (half, shape, start + hlen)
    }

    /// Layer `l` of images n0..<n0+b as float32 (B, T, D); checked finite.
    func slice(layer l: Int, from n0: Int, count b: Int) throws -> UnsafePointer<Float> {
        let n = b * tokens * channels, first = (l * images + n0) * tokens * channels
        if buffer.count < n { buffer = Tensor(shape: [n]) }
        let raw = file.all.baseAddress! + dataOffset, out = buffer.data
        if half {
            let src = raw + 2 * first
            for i in 0..<n { out[i] = Float(Float16(bitPattern: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        } else {
            let src = raw + 4 * first
            for i in 0..<n { out[i] = src.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) }
        }
        // Read once per pass: the mapped pages go back to the kernel, so memory follows the batch.
        Digest.release(file.all, (dataOffset + (half ? 2 : 4) * first)..<(dataOffset + (half ? 2 : 4) * (first + n)))
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
    public private(set) lazy var sha256: String = Digest.sha256(file.all)

    public var json: JSONValue {
        .object([("name", .string(name)), ("features", .string(path)), ("sha256", .string(sha256)),
                 ("dtype", .string(half ? "float16" : "float32")),
                 ("shape", .array((rank == 4 ? [layers, images, tokens, channels] : [layers, images, channels]).map { .int($0) })),
                 ("prefix_tokens", .int(prefixTokens))])
    }
}
