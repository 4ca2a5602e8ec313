import Foundation
import VitLensCore
import XCTest

/// Paths of the committed fixtures (Tests/Fixtures), wherever the package is checked out.
public enum Fixtures {
    public static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        url.deleteLastPathComponent()  // TestSupport
        url.deleteLastPathComponent()  // Tests
        return url.path + "/Fixtures"
    }()
    public static let packageRoot: String = (root as NSString).deletingLastPathComponent.replacingOccurrences(
        of: "/Tests", with: "")
    public static func path(_ rel: String) -> String { root + "/" + rel }
    public static func checkpoint(_ name: String) -> String { root + "/checkpoints/" + name }
    public static func golden(_ name: String) -> String { root + "/golden/" + name }
}

/// A .npy array read for comparison: shape and values as Double (float32, float16, float64, uint8).
public struct NpyArray {
    public let shape: [Int]
    public let values: [Double]

    public init(path: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let bytes = [UInt8](data)
        guard bytes.count > 10, bytes[0] == 0x93,
            bytes[6] == 1 else {
            throw NSError(domain: "npy", code: 1, userInfo: [NSLocalizedDescriptionKey: "\(path): not npy 1.0"]) }
        let hlen = Int(bytes[8]) | Int(bytes[9]) << 8
        let header = String(decoding: bytes[10..<(10 + hlen)], as: UTF8.self)
        let shapeText = header.components(separatedBy: "'shape': (")[1].components(separatedBy: ")")[0]
        shape = shapeText.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let n = shape.reduce(1, *)
        let body = Array(bytes[(10 + hlen)...])
        if header.contains("'<f4'") {
            values = (0..<n).map {
                i in Double(
                body.withUnsafeBytes { Float(bitPattern: $0.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)) }) }
        } else if header.contains("'<f8'") {
            values = (0..<n).map {
                i in body.withUnsafeBytes {
                Double(bitPattern: $0.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)) } }
        } else if header.contains("'<f2'") {
            values = (0..<n).map {
                i in Double(
                body.withUnsafeBytes {
                Float(Float16(bitPattern: $0.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }) }
        } else if header.contains("'|u1'") {
            values = body.prefix(n).map(Double.init)
        } else {
            throw NSError(
                domain: "npy", code: 2,
                userInfo: [NSLocalizedDescriptionKey: "\(path): unsupported dtype in \(header)"])
        }
    }
}

/// The worst element of a comparison, for failure messages that show evidence.
public struct Comparison: CustomStringConvertible {
    public var maxDiff = 0.0
    public var worstIndex = -1
    public var worstGot = 0.0
    public var worstWant = 0.0
    public var meanRelative = 0.0
    public var violations = 0

    public var description: String {
        "max |diff| \(maxDiff) at flat index \(worstIndex) (got \(worstGot), want \(worstWant)); mean relative "
            + "error \(meanRelative); \(violations) elements out of tolerance"
    }
}

/// Compares element-wise with tolerance `abs + rel·|want|`, or the mixed `tol·max(1, |want|)` when `mixed`.
public func compare(_ got: [Double], _ want: [Double], tolerance: Double, mixed: Bool = false) -> Comparison {
    var c = Comparison()
    precondition(got.count == want.count, "sizes differ: \(got.count) vs \(want.count)")
    var sumDiff = 0.0, sumRef = 0.0
    for i in 0..<got.count {
        let d = abs(got[i] - want[i])
        sumDiff += d
        sumRef += abs(want[i])
        let tol = mixed ? tolerance * max(1, abs(want[i])) : tolerance
        if !(d <= tol) { c.violations += 1 }
        if !(d <= c.maxDiff) { c.maxDiff = d; c.worstIndex = i; c.worstGot = got[i]; c.worstWant = want[i] }
    }
    c.meanRelative = sumRef > 0 ? sumDiff / sumRef : sumDiff
    return c
}

/// Runs a program, returning (exit status, stdout, stderr). `signalled` is true if it died of a signal.
public func runProcess(_ executable: String, _ args: [String], environment: [String: String]? = nil)
    -> (status: Int32, signalled: Bool, stdout: String, stderr: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = args
    if let environment { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    do { try p.run() } catch { return (-1, false, "", "\(error)") }
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, p.terminationReason == .uncaughtSignal,
            String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

/// The seeded generator of the tests: VitLensCore's SplitMix64 with the helpers tests use.
public struct SplitMix: RandomNumberGenerator {
    var base: SplitMix64
    public init(state: UInt64) { base = SplitMix64(seed: state) }

    public mutating func next() -> UInt64 { base.next() }

    /// Uniform in 0..<n (0 when n ≤ 0).
    public mutating func below(_ n: Int) -> Int { n <= 0 ? 0 : Int(next() % UInt64(n)) }

    /// A standard normal sample (Box–Muller).
    public mutating func normal() -> Float {
        let u = Double.random(in: Double.ulpOfOne..<1, using: &self), v = Double.random(in: 0..<1, using: &self)
        return Float((-2 * log(u)).squareRoot() * cos(2 * .pi * v))
    }
}

/// A test case with a fresh, empty temporary folder `tmp`, removed after each test.
open class TemporaryFolderTestCase: XCTestCase {
    public var tmp = ""
    open override func setUpWithError() throws { tmp = try makeTemporaryFolder(String(describing: type(of: self))) }
    open override func tearDown() { try? FileManager.default.removeItem(atPath: tmp) }
}

/// A fresh, empty folder under the system's temporary folder, for one test.
public func makeTemporaryFolder(_ label: String) throws -> String {
    let dir = NSTemporaryDirectory() + "vitlens-\(label)-\(getpid())-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// An .npy file (format 1.0) of float32 or float16 values, C order unless `fortran`.
public func writeNpy(
    _ path: String, shape: [Int], values: [Double], half: Bool = false, descr: String? = nil,
    fortran: Bool = false) throws {
    var header = "{'descr': '\(descr ?? (half ? "<f2" : "<f4"))', 'fortran_order': \(fortran ? "True" : "False"), "
        + "'shape': ("
    header += shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? ",), }" : "), }")
    header += String(repeating: " ", count: (64 - (10 + header.utf8.count + 1) % 64) % 64) + "\n"
    var d = Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xff), UInt8(header.utf8.count >> 8)])
    d.append(Data(header.utf8))
    for v in values {
        if half { withUnsafeBytes(of: Float16(v).bitPattern.littleEndian) { d.append(contentsOf: $0) } }
        else { withUnsafeBytes(of: Float(v).bitPattern.littleEndian) { d.append(contentsOf: $0) } }
    }
    try d.write(to: URL(fileURLWithPath: path))
}
