import Foundation

/// A report folder read back from its files: CSV tables (the numbers) and the JSON (the
/// metadata, optional), for `vitlens plot` and for tests.
struct ReportFolder {
    let dir: String

    func path(_ name: String) -> String { dir + "/" + name }
    func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: path(name)) }

    func csv(_ name: String, columns: [String]) throws -> CSVTable {
        let p = path(name)
        guard let data = FileManager.default.contents(atPath: p) else { throw ReportError.unreadable(path: p) }
        guard let text = String(data: data, encoding: .utf8) else { throw ReportError.notText(path: p) }
        let t = try CSVTable.parse(text, path: p)
        try t.require(columns, path: p)
        guard !t.rows.isEmpty else { throw ReportError.noRows(path: p) }
        return t
    }

    /// The report's JSON, or nil when there is none (a CSV-only folder still plots).
    func json(_ name: String) throws -> JSONValue? {
        let p = path(name)
        guard let data = FileManager.default.contents(atPath: p) else { return nil }
        do { return try JSONValue.parse(String(decoding: data, as: UTF8.self)) } catch {
            throw ReportError.malformed(path: p, reason: "\(error)") }
    }
}

/// A number as its CSV cell holds it (9 significant digits): results keep their table numbers
/// at this precision so that a report drawn from memory and one drawn from its files are the
/// same bytes (the JSON keeps every digit).
func tabled(_ x: Double) -> Double { x.isFinite ? Double(csvNumber(x)) ?? x : x }
