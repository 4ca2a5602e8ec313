import Foundation

/// CSV as every report writes it: RFC 4180 quoting (fields with `,` `"` or line breaks are
/// quoted, quotes doubled), `\n` line ends (as pandas and NumPy write), numbers with `.` and
/// 9 significant digits, enough to round-trip float32.
public struct CSVTable: Equatable {
    public var header: [String]
    public var rows: [[String]]

    public init(header: [String], rows: [[String]] = []) {
        self.header = header
        self.rows = rows
    }

    public mutating func append(_ row: [String]) { rows.append(row) }

    public func render() -> String {
        ([header] + rows).map { $0.map(CSVTable.quote).joined(separator: ",") }.joined(separator: "\n") + "\n"
    }

    static func quote(_ f: String) -> String {
        guard f.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return f }
        return "\"" + f.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// Column index by name.
    public func column(_ name: String) -> Int? { header.firstIndex(of: name) }
}

public func csvNumber(_ x: Double) -> String {
    if x.isNaN { return "nan" }
    if x.isInfinite { return x > 0 ? "inf" : "-inf" }
    return String(format: "%.9g", x)
}

public struct CSVError: Error, CustomStringConvertible {
    public let path: String
    public let line: Int
    public let reason: String
    public init(path: String, line: Int, reason: String) { self.path = path; self.line = line; self.reason = reason }
    public var description: String { line > 0 ? "\(path):\(line): \(reason)" : "\(path): \(reason)" }
}

extension CSVTable {
    /// Parses RFC 4180 text (CRLF or LF line ends, quoted fields); every row must have as many
    /// fields as the header.
    public static func parse(_ text: String, path: String) throws -> CSVTable {
        var records: [[String]] = [], field = "", record: [String] = []
        var inQuotes = false, line = 1, afterQuote = false
        var it = Array(text.unicodeScalars)[...]
        func endField() { record.append(field); field = "" }
        while let c = it.popFirst() {
            if inQuotes {
                if c == "\"" {
                    if it.first == "\"" { it.removeFirst(); field.unicodeScalars.append("\"") } else {
                        inQuotes = false; afterQuote = true }
                } else {
                    if c == "\n" { line += 1 }
                    field.unicodeScalars.append(c)
                }
                continue
            }
            switch c {
            case "\"":
                guard field.isEmpty,
                    !afterQuote else { throw CSVError(path: path, line: line, reason: "stray quote inside a field") }
                inQuotes = true
            case ",":
                endField(); afterQuote = false
            case "\r":
                if it.first == "\n" { continue }
                endField(); records.append(record); record = []; afterQuote = false; line += 1
            case "\n":
                endField(); records.append(record); record = []; afterQuote = false; line += 1
            default:
                guard !afterQuote else { throw CSVError(path: path, line: line, reason: "text after a closing quote") }
                field.unicodeScalars.append(c)
            }
        }
        if inQuotes { throw CSVError(path: path, line: line, reason: "unterminated quoted field") }
        if !field.isEmpty || !record.isEmpty { endField(); records.append(record) }
        guard let header = records.first, !(header.count == 1 && header[0].isEmpty) else {
            throw CSVError(path: path, line: 0, reason: "empty CSV (no header)")
        }
        var table = CSVTable(header: header)
        for (k, r) in records.dropFirst().enumerated() {
            if r.count == 1 && r[0].isEmpty { continue }
            guard r.count == header.count else {
                throw CSVError(path: path, line: k + 2, reason: "\(r.count) fields, the header has \(header.count)")
            }
            table.rows.append(r)
        }
        return table
    }

    /// The columns `names` must be present.
    public func require(_ names: [String], path: String) throws {
        for n in names where column(n) == nil {
            throw CSVError(path: path, line: 1, reason: "no column '\(n)' (columns: \(header.joined(separator: ",")))")
        }
    }

    /// Field `name` of row `r` as a number (`nan`, `inf` accepted).
    public func number(_ r: Int, _ name: String, path: String) throws -> Double {
        guard let c = column(name) else { throw CSVError(path: path, line: 1, reason: "no column '\(name)'") }
        let s = rows[r][c].trimmingCharacters(in: .whitespaces)
        switch s.lowercased() {
        case "nan": return .nan
        case "inf", "+inf": return .infinity
        case "-inf": return -.infinity
        default:
            guard let v = Double(s) else {
                throw CSVError(path: path, line: r + 2, reason: "\(name) '\(s)' is not a number") }
            return v
        }
    }

    public func integer(_ r: Int, _ name: String, path: String) throws -> Int {
        guard let c = column(name) else { throw CSVError(path: path, line: 1, reason: "no column '\(name)'") }
        let s = rows[r][c].trimmingCharacters(in: .whitespaces)
        guard let v = Int(s) else {
            throw CSVError(path: path, line: r + 2, reason: "\(name) '\(s)' is not an integer") }
        return v
    }
}
