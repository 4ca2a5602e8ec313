import Foundation
import VitLensCore

/// A .npy file that vitlens refuses, with the reason.
public struct NpyError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public init(path: String, reason: String) { (self.path, self.reason) = (path, reason) }
    public var description: String { "\(path): \(reason)" }
}

/// A NumPy .npy array read in place: memory-mapped, float32 or float16, little-endian, C order.
/// Anything else — another dtype, Fortran order, object arrays, a header that does not parse, a
/// shape whose size overflows or that the file cannot hold — is refused with one reason. Used
/// for features and attention probabilities computed elsewhere.
public final class NpyFile {
    public let path: String
    public let shape: [Int]
    /// float16 (else float32).
    public let half: Bool
    public let file: MappedFile
    /// Where the data starts.
    public let dataOffset: Int
    /// Elements (the product of the shape).
    public let count: Int

    public var elementSize: Int { half ? 2 : 4 }
    public var dtype: String { half ? "float16" : "float32" }

    /// The file opened for reading (pread), beside its mapping: reads go through the page cache
    /// into the caller's buffer and leave nothing mapped, so memory follows what is read, not
    /// the file (nil for bytes held in memory).
    private var descriptor: Int32 = -1
    private var staging: [UInt8] = []

    public convenience init(path: String) throws {
        try self.init(file: MappedFile(path: path), path: path)
        descriptor = open(path, O_RDONLY | O_CLOEXEC)
    }

    deinit { if descriptor >= 0 { close(descriptor) } }

    public init(file: MappedFile, path: String) throws {
        func refuse(_ reason: String) -> NpyError { NpyError(path: path, reason: reason) }
        self.path = path
        self.file = file
        guard let magic = file.bytes(at: 0, count: 8), Array(magic.prefix(6)) == [0x93] + Array("NUMPY".utf8) else {
            throw refuse("not a NumPy .npy file")
        }
        let major = Int(magic[6])
        guard (1...3).contains(major) else { throw refuse("unknown .npy version \(major)") }
        let lengthBytes = major == 1 ? 2 : 4
        guard let lb = file.bytes(at: 8, count: lengthBytes) else { throw refuse(".npy header truncated") }
        let headerLength = lb.enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let start = 8 + lengthBytes
        guard headerLength <= 1 << 20, let hb = file.bytes(at: start, count: headerLength) else {
            throw refuse(".npy header of \(headerLength) bytes runs past the end of the file")
        }
        let header = try NpyFile.parseHeader(String(decoding: hb, as: UTF8.self), refuse)
        (half, shape) = (header.half, header.shape)
        dataOffset = start + headerLength
        var total = 1
        for d in shape {
            let (m, o) = total.multipliedReportingOverflow(by: d)
            guard !o, m <= Int(Int32.max) * 1024 else { throw refuse("shape \(formatShape(shape)) overflows") }
            total = m
        }
        count = total
        let bytes = total * (half ? 2 : 4)
        guard dataOffset <= file.count, bytes <= file.count - dataOffset else {
            throw refuse(
                "shape \(formatShape(shape)) of \(half ? "float16" : "float32") needs \(bytes) bytes of data, the "
                + "file holds \(max(0, file.count - dataOffset))")
        }
    }

    /// The header's Python dict: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }.
    static func parseHeader(_ text: String, _ refuse: (String) -> NpyError) throws -> (half: Bool, shape: [Int]) {
        var fields: [String: String] = [:]
        var rest = Substring(text.trimmingCharacters(in: .whitespacesAndNewlines))
        guard rest.hasPrefix("{"), rest.hasSuffix("}") else { throw refuse("malformed .npy header (not a dict)") }
        rest = rest.dropFirst().dropLast()
        // Keys are quoted; values are a quoted string, True/False, or a parenthesised tuple.
        while true {
            rest = rest.drop { $0 == " " || $0 == "," }
            if rest.isEmpty { break }
            guard let q = rest.first, q == "'" || q == "\"", let close = rest.dropFirst().firstIndex(of: q) else {
                throw refuse("malformed .npy header")
            }
            let key = String(rest[rest.index(after: rest.startIndex)..<close])
            rest = rest[rest.index(after: close)...].drop { $0 == " " }
            guard rest.first == ":" else { throw refuse("malformed .npy header") }
            rest = rest.dropFirst().drop { $0 == " " }
            let value: Substring
            if let v = rest.first, v == "'" || v == "\"" {
                guard let end = rest.dropFirst().firstIndex(of: v) else { throw refuse("malformed .npy header") }
                value = rest[rest.index(after: rest.startIndex)..<end]
                rest = rest[rest.index(after: end)...]
            } else if rest.first == "(" {
                guard let end = rest.firstIndex(of: ")") else { throw refuse("malformed .npy header") }
                value = rest[rest.startIndex...end]
                rest = rest[rest.index(after: end)...]
            } else {
                let end = rest.firstIndex(of: ",") ?? rest.endIndex
                value = rest[..<end]
                rest = rest[end...]
            }
            guard fields.updateValue(value.trimmingCharacters(in: .whitespaces), forKey: key) == nil else {
                throw refuse(".npy header names '\(key)' twice")
            }
        }
        guard let descr = fields["descr"], let order = fields["fortran_order"], let shapeText = fields["shape"] else {
            throw refuse(".npy header lacks descr, fortran_order or shape")
        }
        let half: Bool
        switch descr {
        case "<f4": half = false
        case "<f2": half = true
        case "|O", "O": throw refuse("object arrays are not read (they need pickle); save a float32 or float16 array")
        default: throw refuse("dtype '\(descr.prefix(24))' is not supported (float32 or float16, little-endian)")
        }
        switch order {
        case "False": break
        case "True": throw refuse("Fortran-order arrays are not supported (save with C order: np.ascontiguousarray)")
        default: throw refuse("malformed fortran_order in the .npy header")
        }
        guard shapeText.hasPrefix("("),
            shapeText.hasSuffix(")") else { throw refuse("malformed shape in the .npy header") }
        let dims = shapeText.dropFirst().dropLast().split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        var shape: [Int] = []
        for (i, d) in dims.enumerated() {
            if d.isEmpty && i == dims.count - 1 && (i > 0 || dims.count == 1) { break }  // (5,) and ()
            guard let v = Int(d),
                v >= 0 else { throw refuse("malformed shape \(shapeText.prefix(60)) in the .npy header") }
            shape.append(v)
        }
        guard shape.count <= 32 else { throw refuse("\(shape.count) dimensions") }
        return (half, shape)
    }

    /// Elements first..<first+n as float32 into `out`: read with pread when the file is on disk
    /// (the mapping then stays untouched), else from memory.
    public func read(_ first: Int, _ n: Int, into out: UnsafeMutablePointer<Float>) throws {
        precondition(first >= 0 && n >= 0 && first + n <= count, "read outside the array")
        guard n > 0 else { return }
        let at = dataOffset + elementSize * first, bytes = elementSize * n
        if descriptor >= 0 {
            if staging.count < bytes { staging = [UInt8](repeating: 0, count: bytes) }
            try staging.withUnsafeMutableBytes { buf in
                var done = 0
                while done < bytes {
                    let r = pread(descriptor, buf.baseAddress! + done, bytes - done, off_t(at + done))
                    if r < 0 && errno == EINTR { continue }
                    guard r > 0 else {
                        throw NpyError(
                        path: path, reason: "cannot read \(bytes) bytes at offset \(at): "
                        + (r < 0 ? String(cString: strerror(errno)) : "the file is shorter than its header says")) }
                    done += r
                }
                convert(UnsafeRawPointer(buf.baseAddress!), n, into: out)
            }
        } else {
            convert(file.all.baseAddress! + at, n, into: out)
        }
    }

    private func convert(_ raw: UnsafeRawPointer, _ n: Int, into out: UnsafeMutablePointer<Float>) {
        if half {
            for i in 0..<n {
                out[i] = Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        } else {
            for i in 0..<n { out[i] = raw.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) }
        }
    }
}
