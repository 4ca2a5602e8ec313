import Foundation
import TestSupport
import XCTest

/// CKA from features computed elsewhere: .npy arrays and vitlens extract folders, alone or
/// mixed with checkpoints, against the checkpoint run of the same model.
final class FeatureInputTests: TemporaryFolderTestCase {
    let images = Fixtures.path("images/cka")
    let a = Fixtures.checkpoint("tiny_f32.safetensors"), b = Fixtures.checkpoint("tiny2_f32.safetensors")

    func run(_ args: [String]) -> (status: Int32, signalled: Bool, stdout: String, stderr: String) {
        runProcess(CLITests.binary, args) }

    func cka(_ dir: String) throws -> [Double] {
        try String(contentsOfFile: dir + "/cka.csv", encoding: .utf8).split(separator: "\n").dropFirst().map {
            Double($0.split(separator: ",")[2]) ?? .nan }
    }

    func extract(_ ckpt: String, _ name: String) -> String {
        let out = tmp + "/" + name
        XCTAssertEqual(
            run(["extract", ckpt, "--images", images, "--resize", "none", "--out", out, "--quiet"]).status, 0)
        return out
    }

    func testExtractFoldersAndNpyGiveTheCheckpointsCKA() throws {
        let ea = extract(a, "ea"), eb = extract(b, "eb")
        XCTAssertEqual(
            run(["cka", a, b, "--images", images, "--resize", "none", "--batch", "4", "--out", tmp + "/ref",
            "--quiet"]).status, 0)
        let ref = try cka(tmp + "/ref")
        for (args, name) in [([ea, eb], "folders"), ([ea, b, "--images", images, "--resize", "none"], "mixed"),
                             ([ea + "/features.npy", eb, "--prefix-tokens-a", "1"], "npy")] {
            let r = run(["cka"] + args + ["--batch", "4", "--out", tmp + "/" + name, "--quiet"])
            XCTAssertEqual(r.status, 0, "\(name): \(r.stderr)")
            let got = try cka(tmp + "/" + name)
            XCTAssertEqual(got.count, ref.count, name)
            let c = compare(got, ref, tolerance: 1e-6)
            XCTAssertEqual(c.violations, 0, "\(name): \(c)")
        }
        // One vector per image, [L, N, D]: the mean of the patch tokens gives `--tokens mean`.
        let f = try NpyArray(path: ea + "/features.npy")
        let (L, N, T, D) = (f.shape[0], f.shape[1], f.shape[2], f.shape[3])
        var pooled = [Double](repeating: 0, count: L * N * D)
        for l in 0..<L {
            for n in 0..<N {
            for t in 1..<T {
            for d in 0..<D {
            pooled[(l * N + n) * D + d] += f.values[((l * N + n) * T + t) * D + d] / Double(T - 1) } } } }
        try writeNpy(tmp + "/pooled.npy", shape: [L, N, D], values: pooled)
        try writeNpy(tmp + "/pooled16.npy", shape: [L, N, D], values: pooled, half: true)
        XCTAssertEqual(
            run(["cka", a, "--images", images, "--resize", "none", "--batch", "4", "--tokens", "mean", "--out", tmp
            + "/mean", "--quiet"]).status, 0)
        XCTAssertEqual(run(["cka", tmp + "/pooled.npy", "--batch", "4", "--out", tmp + "/p32", "--quiet"]).status, 0)
        XCTAssertEqual(run(["cka", tmp + "/pooled16.npy", "--batch", "4", "--out", tmp + "/p16", "--quiet"]).status, 0)
        let c32 = compare(try cka(tmp + "/p32"), try cka(tmp + "/mean"), tolerance: 1e-6)
        XCTAssertEqual(c32.violations, 0, "float32 [L, N, D]: \(c32)")
        let c16 = compare(try cka(tmp + "/p16"), try cka(tmp + "/mean"), tolerance: 2e-3)
        XCTAssertEqual(c16.violations, 0, "float16 [L, N, D]: \(c16)")
    }

    func testBadFeatureFilesAreRefusedInOneLine() throws {
        let ea = extract(a, "ea")
        func fails(_ args: [String], code: Int32 = 1, _ mentions: String, line: UInt = #line) {
            let r = run(["cka"] + args + ["--batch", "4", "--out", tmp + "/x"])
            XCTAssertEqual(r.status, code, r.stderr, line: line)
            XCTAssertTrue(
                r.stderr.hasPrefix("error: ") && r.stderr.contains(mentions)
                && r.stderr.split(separator: "\n").count == 1,
                          "'\(r.stderr)' should mention '\(mentions)'", line: line)
            XCTAssertFalse(FileManager.default.fileExists(atPath: tmp + "/x"), "no report", line: line)
        }
        let v = (0..<(2 * 12 * 4)).map { Double($0 % 7) - 3 }
        try writeNpy(tmp + "/n12.npy", shape: [2, 12, 4], values: v)
        try writeNpy(tmp + "/n8.npy", shape: [2, 8, 4], values: Array(v.prefix(64)))
        fails([tmp + "/n12.npy", tmp + "/n8.npy"], "n8.npy holds features of 8 images")
        fails([ea, a, "--images", tmp + "/nothing"], "no such folder")
        try writeNpy(tmp + "/rank2.npy", shape: [12, 4], values: Array(v.prefix(48)))
        fails([tmp + "/rank2.npy"], "got 2 dimensions [12, 4]")
        try writeNpy(tmp + "/tok.npy", shape: [2, 12, 3, 4], values: (0..<(2 * 12 * 12)).map { Double($0 % 5) })
        fails([tmp + "/tok.npy"], code: 64, "needs --prefix-tokens")
        fails([tmp + "/tok.npy", "--prefix-tokens", "3"], "3 prefix tokens, but only 3 tokens per image")
        var bad = v
        bad[50] = .nan
        try writeNpy(tmp + "/nan.npy", shape: [2, 12, 4], values: bad)
        fails([tmp + "/nan.npy"], "non-finite value nan in layer 1, image 0")
        try writeNpy(tmp + "/fortran.npy", shape: [2, 12, 4], values: v, fortran: true)
        fails([tmp + "/fortran.npy"], "Fortran-order")
        try writeNpy(tmp + "/object.npy", shape: [2, 12, 4], values: v, descr: "|O")
        fails([tmp + "/object.npy"], "object arrays are not read")
        try Data(Array("not an npy at all".utf8)).write(to: URL(fileURLWithPath: tmp + "/junk.npy"))
        fails([tmp + "/junk.npy"], "junk.npy: not a NumPy .npy file")
        try writeNpy(tmp + "/short.npy", shape: [2, 12, 400], values: v)
        fails([tmp + "/short.npy"], "needs 38400 bytes of data")
        try writeNpy(tmp + "/huge.npy", shape: [4_000_000_000, 4_000_000_000, 4], values: v)
        fails([tmp + "/huge.npy"], "huge.npy")
    }
}

extension FeatureInputTests {
    /// extract narrowed: chosen representations, no attention, patch/cls/mean tokens, float16 —
    /// the same numbers as the full extract; a narrowed folder feeds cka like a full one.
    func testNarrowedExtract() throws {
        let full = extract(a, "full")
        let f = try NpyArray(path: full + "/features.npy")
        let (L1, N, T, D) = (f.shape[0], f.shape[1], f.shape[2], f.shape[3])
        func at(_ l: Int, _ n: Int, _ t: Int, _ d: Int) -> Double { f.values[((l * N + n) * T + t) * D + d] }
        let r = run(
            ["extract", a, "--images", images, "--resize", "none", "--layers", "2,0", "--no-attention", "--tokens",
            "patches",
                     "--dtype", "f16", "--out", tmp + "/narrow"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(
            r.stderr.contains("notice: writing 0.0 MB for 12 images") || r.stderr.contains("MB for 12 images"),
            r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp + "/narrow/attention.npy"))
        let p = try NpyArray(path: tmp + "/narrow/features.npy")
        XCTAssertEqual(p.shape, [2, N, T - 1, D])
        var want: [Double] = []
        for l in [0, 2] { for n in 0..<N { for t in 1..<T { for d in 0..<D { want.append(at(l, n, t, d)) } } } }
        let c = compare(p.values, want, tolerance: 1e-3, mixed: true)
        XCTAssertEqual(c.violations, 0, "float16 patches: \(c)")
        for (tokens, pick) in [("cls", { (l: Int, n: Int, d: Int) in at(l, n, 0, d) }),
                               ("mean", {
                                   (l: Int, n: Int, d: Int) in (1..<T).reduce(0.0) { $0 + at(l, n, $1, d) } / Double(
                                   T - 1) })] {
            XCTAssertEqual(
                run(["extract", a, "--images", images, "--resize", "none", "--no-attention", "--tokens", tokens,
                "--out", tmp + "/" + tokens, "--quiet"]).status, 0)
            let v = try NpyArray(path: tmp + "/\(tokens)/features.npy")
            XCTAssertEqual(v.shape, [L1, N, D], tokens)
            var w: [Double] = []
            for l in 0..<L1 { for n in 0..<N { for d in 0..<D { w.append(pick(l, n, d)) } } }
            let cc = compare(v.values, w, tolerance: 1e-6, mixed: true)
            XCTAssertEqual(cc.violations, 0, "\(tokens): \(cc)")
        }
        // A patches-only folder records 0 prefix tokens and gives the checkpoint's CKA.
        XCTAssertEqual(
            run(["extract", a, "--images", images, "--resize", "none", "--no-attention", "--tokens", "patches", "--out",
            tmp + "/p32", "--quiet"]).status, 0)
        XCTAssertEqual(run(["cka", tmp + "/p32", "--batch", "4", "--out", tmp + "/ckp", "--quiet"]).status, 0)
        XCTAssertEqual(
            run(["cka", a, "--images", images, "--resize", "none", "--batch", "4", "--out", tmp + "/cka",
            "--quiet"]).status, 0)
        let cp = compare(try cka(tmp + "/ckp"), try cka(tmp + "/cka"), tolerance: 1e-6)
        XCTAssertEqual(cp.violations, 0, "\(cp)")
        let bad = run(["extract", a, "--images", images, "--layers", "9", "--out", tmp + "/bad"])
        XCTAssertEqual(bad.status, 64, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("--layers 9"), bad.stderr)
    }
}
