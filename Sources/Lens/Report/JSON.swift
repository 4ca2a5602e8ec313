import Foundation
import VitLensCore

/// A JSON value with ordered object keys, so reports read in a stable, meaningful order.
/// Foundation cannot do this: JSONSerialization and JSONEncoder hold objects in dictionaries
/// (whose order is unspecified, or sorted with `.sortedKeys`), so a report's setup, definitions
/// and results would come out shuffled or alphabetical. Numbers are written in Swift's shortest
/// round-trip form, which partial sums need to merge bit for bit.
public indirect enum JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral {
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object([(String, JSONValue)])

    public init(stringLiteral v: String) { self = .string(v) }
    public init(integerLiteral v: Int) { self = .int(v) }
    public init(floatLiteral v: Double) { self = .double(v) }
    public init(booleanLiteral v: Bool) { self = .bool(v) }
    public init(arrayLiteral v: JSONValue...) { self = .array(v) }

    public func render(indent: Int = 0) -> String {
        let pad = String(repeating: "  ", count: indent), inner = String(repeating: "  ", count: indent + 1)
        switch self {
        case let .string(s): return JSONValue.quote(s)
        case let .int(i): return String(i)
        case let .double(d): return d.isFinite ? "\(d)" : "null"
        case let .bool(b): return b ? "true" : "false"
        case .null: return "null"
        case let .array(a):
            if a.isEmpty { return "[]" }
            if a.allSatisfy(
                { if case .object = $0 { return false }; if case .array = $0 { return false }; return true }) {
                return "[" + a.map { $0.render() }.joined(separator: ", ") + "]"
            }
            return "[\n" + a.map { inner + $0.render(indent: indent + 1) }.joined(separator: ",\n") + "\n" + pad + "]"
        case let .object(o):
            if o.isEmpty { return "{}" }
            return "{\n" + o.map { inner + JSONValue.quote($0.0) + ": " + $0.1.render(indent: indent + 1) }
                .joined(separator: ",\n") + "\n" + pad + "}"
        }
    }

    static func quote(_ s: String) -> String { jsonQuoted(s) }
}

/// A strict JSON parser that keeps object keys in order and numbers exactly as written
/// (integers as Int, the rest through Double's correctly rounded parser), so reports and
/// partial sums read back bit for bit.
public struct JSONParseError: Error, CustomStringConvertible {
    public let offset: Int
    public let reason: String
    public var description: String { "invalid JSON at byte \(offset): \(reason)" }
}

extension JSONValue {
    public static func parse(_ text: String) throws -> JSONValue {
        var p = JSONParser(bytes: Array(text.utf8))
        p.skipSpace()
        let v = try p.value(depth: 0)
        p.skipSpace()
        guard p.pos == p.bytes.count else { throw JSONParseError(offset: p.pos, reason: "trailing characters") }
        return v
    }

    public subscript(key: String) -> JSONValue? {
        if case let .object(o) = self { return o.first { $0.0 == key }?.1 }
        return nil
    }

    /// The value at a path of object keys, nil when any step is missing.
    public subscript(path keys: String...) -> JSONValue? {
        var v: JSONValue? = self
        for k in keys { v = v?[k] }
        return v
    }

    public var stringValue: String? { if case let .string(s) = self { return s }; return nil }
    public var intValue: Int? { if case let .int(i) = self { return i }; return nil }
    public var boolValue: Bool? { if case let .bool(b) = self { return b }; return nil }
    public var arrayValue: [JSONValue]? { if case let .array(a) = self { return a }; return nil }
    /// A number; `null` reads as NaN, because vitlens writes non-finite numbers as null.
    public var doubleValue: Double? {
        switch self {
        case let .double(d): return d
        case let .int(i): return Double(i)
        case .null: return .nan
        default: return nil
        }
    }

    /// Flattened key/value pairs of an object, nested keys joined with dots (for HTML tables);
    /// long arrays are summarised by their length.
    public func flattened(prefix: String = "") -> [(String, String)] {
        switch self {
        case let .object(o): return o.flatMap { $0.1.flattened(prefix: prefix.isEmpty ? $0.0 : prefix + "." + $0.0) }
        case let .string(s): return [(prefix, s)]
        case let .array(a) where a.count > 16: return [(prefix, "[\(a.count) values]")]
        default: return [(prefix, render())]
        }
    }

    /// Doubles as a JSON array (each in its shortest exact form).
    public static func doubles(_ a: [Double]) -> JSONValue { .array(a.map { .double($0) }) }
}

private struct JSONParser {
    let bytes: [UInt8]
    var pos = 0

    mutating func skipSpace() {
        while pos < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[pos]) { pos += 1 }
    }

    func fail(_ r: String) -> JSONParseError { JSONParseError(offset: pos, reason: r) }

    mutating func literal(_ s: String, _ v: JSONValue) throws -> JSONValue {
        let u = Array(s.utf8)
        guard pos + u.count <= bytes.count,
            Array(bytes[pos..<(pos + u.count)]) == u else { throw fail("unexpected token") }
        pos += u.count
        return v
    }

    mutating func value(depth: Int) throws -> JSONValue {
        guard depth < 512 else { throw fail("nested too deeply") }
        guard pos < bytes.count else { throw fail("unexpected end") }
        switch bytes[pos] {
        case UInt8(ascii: "{"):
            pos += 1
            var items: [(String, JSONValue)] = []
            skipSpace()
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(items) }
            while true {
                skipSpace()
                guard case let .string(k) = try value(depth: depth + 1) else {
                    throw fail("object key is not a string") }
                skipSpace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                pos += 1
                skipSpace()
                items.append((k, try value(depth: depth + 1)))
                skipSpace()
                guard pos < bytes.count else { throw fail("unexpected end") }
                if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                if bytes[pos] == UInt8(ascii: "}") { pos += 1; return .object(items) }
                throw fail("expected ',' or '}'")
            }
        case UInt8(ascii: "["):
            pos += 1
            var items: [JSONValue] = []
            skipSpace()
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
            while true {
                skipSpace()
                items.append(try value(depth: depth + 1))
                skipSpace()
                guard pos < bytes.count else { throw fail("unexpected end") }
                if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                if bytes[pos] == UInt8(ascii: "]") { pos += 1; return .array(items) }
                throw fail("expected ',' or ']'")
            }
        case UInt8(ascii: "\""):
            pos += 1
            var out = [UInt8]()
            while true {
                guard pos < bytes.count else { throw fail("unterminated string") }
                let c = bytes[pos]
                pos += 1
                if c == UInt8(ascii: "\"") { break }
                if c != UInt8(ascii: "\\") { out.append(c); continue }
                guard pos < bytes.count else { throw fail("unterminated escape") }
                let e = bytes[pos]
                pos += 1
                switch e {
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "u"):
                    guard pos + 4 <= bytes.count,
                        let v = UInt32(String(decoding: bytes[pos..<(pos + 4)], as: UTF8.self), radix: 16) else {
                        throw fail("bad \\u escape")
                    }
                    pos += 4
                    out += Array(String(Unicode.Scalar(v).map(Character.init) ?? "\u{FFFD}").utf8)
                default: out.append(e)
                }
            }
            return .string(String(decoding: out, as: UTF8.self))
        case UInt8(ascii: "t"): return try literal("true", .bool(true))
        case UInt8(ascii: "f"): return try literal("false", .bool(false))
        case UInt8(ascii: "n"): return try literal("null", .null)
        default:
            let start = pos
            while pos < bytes.count, "+-0123456789.eE".utf8.contains(bytes[pos]) { pos += 1 }
            let s = String(decoding: bytes[start..<pos], as: UTF8.self)
            if let i = Int(s) { return .int(i) }
            if let d = Double(s) { return .double(d) }
            pos = start
            throw fail("unexpected character")
        }
    }
}
