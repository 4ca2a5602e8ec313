import Foundation
import TestSupport
import VitLensCore
import XCTest

/// End-to-end: the built `vitlens` binary on fixtures — files, exit codes, error lines.
final class CLITests: XCTestCase {
    static let binary: String = {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        // swift test runs <debug>/vitlensPackageTests.xctest; the executable sits beside it.
        for candidate in [dir, dir.deletingLastPathComponent()] {
            let p = candidate.appendingPathComponent("vitlens").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return Fixtures.packageRoot + "/.build/debug/vitlens"
    }()

    var tmp = ""

    override func setUpWithError() throws {
        tmp = NSTemporaryDirectory() + "vitlens-cli-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: tmp) }

    func vitlens(_ args: String...) -> (status: Int32, signalled: Bool, stdout: String, stderr: String) {
        runProcess(Self.binary, args)
    }

    func testExtractMatchesTimmGoldens() throws {
        let out = tmp + "/report"
        let r = vitlens(
            "extract", Fixtures.checkpoint("tiny_mae.pth"), "--heads", "2", "--images", Fixtures.path("images/none"),
                        "--resize", "none", "--batch", "3", "--out", out, "--quiet")
        XCTAssertEqual(r.status, 0, r.stderr)
        let f = try NpyArray(path: out + "/features.npy"), a = try NpyArray(path: out + "/attention.npy")
        XCTAssertEqual(f.shape, [3, 4, 17, 16])
        XCTAssertEqual(a.shape, [2, 4, 2, 17, 17])
        let rf = compare(
            f.values, try NpyArray(path: Fixtures.golden("none_features.npy")).values, tolerance: 1e-3, mixed: true)
        XCTAssertEqual(rf.violations, 0, "features.npy: \(rf)")
        let ra = compare(a.values, try NpyArray(path: Fixtures.golden("none_attention.npy")).values, tolerance: 1e-4)
        XCTAssertEqual(ra.violations, 0, "attention.npy: \(ra)")
        let meta = try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: out + "/meta.json"))) as! [String: Any]
        let ck = meta["checkpoint"] as! [String: Any]
        XCTAssertEqual((ck["sha256"] as! String).count, 64)
        XCTAssertEqual(ck["layout"] as? String, "MAE/mae-lite")
        XCTAssertEqual((meta["architecture"] as! [String: Any])["heads"] as? Int, 2)
        XCTAssertEqual((meta["images"] as! [String: Any])["count"] as? Int, 4)
        XCTAssertEqual((meta["definitions"] as! [String: Any])["rep"] as? String, "normed")
        // Nothing but the report: the staging folder is gone.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp), ["report"])
    }

    func testExtractResidualAndTimmEval() throws {
        let r = vitlens(
            "extract", Fixtures.checkpoint("tiny_hf"), "--images", Fixtures.path("images/eval"), "--rep", "residual",
                        "--out", tmp + "/r", "--quiet")
        XCTAssertEqual(r.status, 0, r.stderr)
        let f = try NpyArray(path: tmp + "/r/features.npy")
        let c = compare(
            f.values, try NpyArray(path: Fixtures.golden("eval_residual.npy")).values, tolerance: 1e-3, mixed: true)
        XCTAssertLessThanOrEqual(c.meanRelative, 3e-2, "\(c)")
    }

    func testInspect() {
        let r = vitlens("inspect", Fixtures.checkpoint("tiny_moco.pth.tar"), "--heads", "2")
        XCTAssertEqual(r.status, 0, r.stderr)
        for s in [
            "MoCo v3", "state_dict", "width 16, depth 2, patch 8", "2 (head dim 8), from --heads",
            "module.momentum_encoder.* (30)", "sha256"] {
            XCTAssertTrue(r.stdout.contains(s), "inspect output lacks '\(s)':\n\(r.stdout)")
        }
        // Parameter count against timm: sum(p.numel()) over the micro-ViT's parameters, head
        // excluded (7856; for deit_tiny_patch16_224 the same count is 5524416).
        XCTAssertTrue(r.stdout.contains("parameters    7856 in the forward pass"), r.stdout)
        let big = vitlens("inspect", Fixtures.packageRoot + "/checkpoints/vit_tiny_init.safetensors", "--json")
        XCTAssertTrue(big.stdout.contains("\"parameters\": 5524416"), big.stdout)
        let n = vitlens("inspect", Fixtures.checkpoint("tiny_timm.pth"))
        XCTAssertTrue(n.stderr.isEmpty && n.stdout.contains("DeiT/ViT convention"), n.stdout)
    }

    /// docs/reference.md, "Errors": one `error:` line naming the culprit, the exit code, no partial report.
    func assertFails(_ args: [String], code: Int32, mentions: String, line: UInt = #line) {
        let out = tmp + "/bad"
        let r = runProcess(Self.binary, args + ["--out", out])
        XCTAssertFalse(r.signalled, "crashed: \(r.stderr)", line: line)
        XCTAssertEqual(r.status, code, r.stderr, line: line)
        let lines = r.stderr.split(separator: "\n").filter { !$0.hasPrefix("notice:") }
        XCTAssertEqual(lines.count, 1, "exactly one error line: \(r.stderr)", line: line)
        XCTAssertTrue(lines.first?.hasPrefix("error: ") ?? false, r.stderr, line: line)
        XCTAssertTrue(r.stderr.contains(mentions), "'\(r.stderr)' should mention '\(mentions)'", line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "partial report left behind", line: line)
        let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: tmp)) ?? []
        XCTAssertTrue(leftovers.filter { $0.contains("vitlens-tmp") }.isEmpty, "staging left: \(leftovers)", line: line)
    }

    func testBadInputs() throws {
        let none = Fixtures.path("images/none"), eval = Fixtures.path("images/eval")
        let f32 = Fixtures.checkpoint("tiny_f32.safetensors")
        assertFails(["extract", Fixtures.checkpoint("nope.pth"), "--images", none], code: 1, mentions: "nope.pth")
        assertFails(
            ["extract", Fixtures.checkpoint("evil_os_system.pth"), "--images", none], code: 1,
            mentions: "'posix.system' is not allowed")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/tmp/vitlens-pwned"))
        assertFails(
            ["extract", Fixtures.checkpoint("tiny_timm_deflated.pth"), "--images", none], code: 1,
            mentions: "compressed")
        assertFails(
            ["extract", Fixtures.path("images/none/a_astronaut.png"), "--images", none], code: 1,
            mentions: "not a checkpoint")
        assertFails(
            ["extract", f32, "--images", eval, "--resize", "none"], code: 1,
            mentions: "chelsea_45x37.jpg: image is 45x37")
        assertFails(["extract", f32, "--images", none, "--heads", "5"], code: 64, mentions: "--heads 5 does not divide")
        assertFails(["extract", f32, "--images", none, "--num", "0"], code: 64, mentions: "--num")
        assertFails(["extract", f32, "--images", none, "--batch", "0"], code: 64, mentions: "--batch")
        assertFails(["extract", f32, "--images", none, "--resize", "stretch"], code: 64, mentions: "stretch")
        assertFails(["extract", f32], code: 64, mentions: "--images")
        assertFails(["extract", f32, "--images", tmp + "/missing"], code: 1, mentions: "missing: no such folder")
        try FileManager.default.createDirectory(atPath: tmp + "/empty", withIntermediateDirectories: true)
        assertFails(["extract", f32, "--images", tmp + "/empty"], code: 1, mentions: "no PNG or JPEG images")
        try FileManager.default.createDirectory(atPath: tmp + "/broken", withIntermediateDirectories: true)
        try "junk".write(toFile: tmp + "/broken/x.png", atomically: true, encoding: .utf8)
        assertFails(["extract", f32, "--images", tmp + "/broken"], code: 1, mentions: "x.png: cannot decode image")
        // A well-formed checkpoint that is not a ViT (a CNN's state dict).
        let header = Array(
            (#"{"conv1.weight":{"dtype":"F32","shape":[2,3,1,1],"data_offsets":[0,24]},"#
                + #""fc.bias":{"dtype":"F32","shape":[1],"data_offsets":[24,28]}}"#).utf8)
        var cnn = [UInt8](repeating: 0, count: 8)
        for k in 0..<8 { cnn[k] = UInt8(truncatingIfNeeded: header.count >> (8 * k)) }
        cnn += header + [UInt8](repeating: 0, count: 28)
        try Data(cnn).write(to: URL(fileURLWithPath: tmp + "/resnet.safetensors"))
        assertFails(
            ["extract", tmp + "/resnet.safetensors", "--images", none], code: 1, mentions: "not a ViT checkpoint")
        // Truncated and lying checkpoints.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: f32))
        try bytes.prefix(bytes.count - 100).write(to: URL(fileURLWithPath: tmp + "/cut.safetensors"))
        assertFails(["extract", tmp + "/cut.safetensors", "--images", none], code: 1, mentions: "cut.safetensors")
    }

    /// Help for the tool and every command: exit 0, on stdout, in the tool's own words (no
    /// pointers into the developers' specification).
    func testHelp() {
        for args in [["--help"], []]
            + ["cka", "attention", "maps", "probe", "finetune", "plot", "merge", "inspect", "extract", "bench"].map(
            { [$0, "--help"] }) {
            let r = runProcess(Self.binary, args)
            XCTAssertEqual(r.status, 0, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stdout.contains("USAGE:"), "\(args): \(r.stdout)")
            XCTAssertFalse(r.stdout.contains("SPEC"), "\(args) help points at SPEC")
        }
    }

    func testOutputPointingAtAFileOrUnwritablePlace() throws {
        try "x".write(toFile: tmp + "/file", atomically: true, encoding: .utf8)
        let r = vitlens(
            "extract", Fixtures.checkpoint("tiny_f32.safetensors"), "--images", Fixtures.path("images/none"),
            "--resize", "none", "--out", tmp + "/file")
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.hasPrefix("error: --out \(tmp)/file: exists and is not a folder"), r.stderr)
        let u = vitlens(
            "extract", Fixtures.checkpoint("tiny_f32.safetensors"), "--images", Fixtures.path("images/none"),
            "--resize", "none", "--out", tmp + "/file/sub")
        XCTAssertEqual(u.status, 1)
        XCTAssertTrue(u.stderr.hasPrefix("error: ") && u.stderr.contains("file/sub"), u.stderr)
    }

    func testSkipBadImages() throws {
        try FileManager.default.createDirectory(atPath: tmp + "/mixed", withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            atPath: Fixtures.path("images/none/a_astronaut.png"), toPath: tmp + "/mixed/a.png")
        try "junk".write(toFile: tmp + "/mixed/b.jpg", atomically: true, encoding: .utf8)
        let r = vitlens(
            "extract", Fixtures.checkpoint("tiny_f32.safetensors"), "--images", tmp + "/mixed", "--resize", "none",
                        "--skip-bad-images", "--out", tmp + "/o", "--quiet")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("warning: skipping") && r.stderr.contains("b.jpg"), r.stderr)
        XCTAssertEqual(try NpyArray(path: tmp + "/o/features.npy").shape, [3, 1, 17, 16])
    }

    /// Ctrl-C mid-run: exit 130, one error line, no report and no staging folder left; and a
    /// staging folder of a killed process is cleaned up by the next run of the same report.
    func testInterruptLeavesNothing() throws {
        let out = tmp + "/interrupted"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binary)
        p.arguments = ["extract", Fixtures.packageRoot + "/checkpoints/vit_tiny_init.safetensors", "--images",
                       Fixtures.packageRoot + "/checkpoints/images", "--batch", "1", "--out", out, "--quiet"]
        let err = Pipe()
        p.standardError = err
        try p.run()
        // Wait until the run is under way (its staging folder exists), then interrupt it.
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline && p.isRunning {
            if ((try? FileManager.default.contentsOfDirectory(atPath: tmp)) ?? []).contains(
                where: { $0.contains("vitlens-tmp") }) { break }
            usleep(20_000)
        }
        usleep(100_000)
        XCTAssertTrue(p.isRunning, "the run ended before it could be interrupted")
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(p.terminationStatus, 130, stderr)
        XCTAssertTrue(stderr.contains("error: interrupted"), stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp), [], "left behind")

        // A staging folder of a process that no longer exists (pid 999999) is removed.
        try FileManager.default.createDirectory(
            atPath: tmp + "/.r.vitlens-tmp-999999", withIntermediateDirectories: true)
        let r = vitlens(
            "extract", Fixtures.checkpoint("tiny_f32.safetensors"), "--images", Fixtures.path("images/none"),
                        "--resize", "none", "--out", tmp + "/r", "--quiet")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp), ["r"])
    }

    /// bench's derived numbers: GFLOP/s is images/s times the fixture's FLOPs per image counted
    /// here by hand, the fraction of peak is GFLOP/s over the sgemm peak it measured, and the
    /// checkpoint load time is positive and well under the run.
    func testBenchNumbersAreConsistent() throws {
        let r = runProcess(
            Self.binary,
            ["bench", Fixtures.checkpoint("tiny_f32.safetensors"), "--batch", "3", "--iters", "3", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        // The fixture: 32x32 images, patch 8 (16 patches + class token), width 16, MLP 32, 2 blocks.
        let t = 17.0, c = 16.0, f = 32.0
        let perBlock = 2 * t * c * 3 * c + 2 * 2 * t * t * c + 2 * t * c * c + 2 * 2 * t * c * f
        let flops = 2 * perBlock + 2 * 16 * c * (3 * 8 * 8)
        let ips = obj["images_per_second"] as! Double, gflops = obj["gflops"] as! Double
        XCTAssertGreaterThan(gflops, 0.01)
        XCTAssertEqual(gflops, ips * flops / 1e9, accuracy: 0.01 * gflops)
        let peak = obj["sgemm_peak_gflops"] as! Double, fraction = obj["fraction_of_peak"] as! Double
        XCTAssertGreaterThan(peak, 1)
        XCTAssertEqual(fraction, gflops / peak, accuracy: 0.01 * fraction)
        let load = obj["load_ms"] as! Double
        XCTAssertGreaterThan(load, 0)
        XCTAssertLessThan(load, 5000)
    }

    /// OpenBLAS's kernel family is chosen by vitlens itself: forcing the generic one through
    /// the environment is undone on CPUs that can do better.
    func testBLASKernelIsChosenByCPU() throws {
        let (flags, vendor) = BLASKernelChoice.cpuFeatures()
        let r = runProcess(
            Self.binary,
            ["bench", Fixtures.checkpoint("tiny_f32.safetensors"), "--batch", "2", "--iters", "1", "--json"],
                           environment: ["OPENBLAS_CORETYPE": "Prescott"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        let core = obj["blas_core"] as! String
        if let best = BLASKernelChoice.best(flags: flags, vendor: vendor) {
            XCTAssertEqual(core.lowercased(), best.lowercased())
        } else {
            XCTAssertEqual(core, "Prescott")
        }
        XCTAssertGreaterThan(obj["images_per_second"] as! Double, 0)
        let keep = runProcess(
            Self.binary,
            ["bench", Fixtures.checkpoint("tiny_f32.safetensors"), "--batch", "2", "--iters", "1", "--json"],
                              environment: ["OPENBLAS_CORETYPE": "Prescott", "VITLENS_BLAS_CORETYPE": "keep"])
        XCTAssertTrue(keep.stdout.contains("\"Prescott\""), keep.stdout)
    }
}
