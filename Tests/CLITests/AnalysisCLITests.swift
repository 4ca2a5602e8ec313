import Foundation
import Lens
import TestSupport
import XCTest

/// `vitlens cka`, `attention` and `merge` end to end against the float64 goldens of
/// Tests/Fixtures/make_fixtures.py (timm float64 taps, the formulas of docs/reference.md in numpy).
final class AnalysisCLITests: XCTestCase {
    var tmp = ""
    let images = Fixtures.path("images/cka")
    let a = Fixtures.checkpoint("tiny_f32.safetensors"), b = Fixtures.checkpoint("tiny2_f32.safetensors")

    override func setUpWithError() throws {
        tmp = NSTemporaryDirectory() + "vitlens-an-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: tmp) }

    func run(_ args: [String]) -> (status: Int32, signalled: Bool, stdout: String, stderr: String) {
        runProcess(CLITests.binary, args + ["--quiet"])
    }

    /// cka.csv rows → matrix values in row-major order.
    func readCKA(_ dir: String) throws -> [Double] {
        let text = try String(contentsOfFile: dir + "/cka.csv", encoding: .utf8)
        let lines = text.split(separator: "\n")
        XCTAssertEqual(lines.first, "layer_a,layer_b,cka,ci_low,ci_high")
        for l in lines.dropFirst() {
            let f = l.split(separator: ",").map { Double($0) ?? .nan }
            if f[3].isFinite || f[4].isFinite { XCTAssertLessThanOrEqual(f[3], f[4], "interval of \(l)") }
        }
        return lines.dropFirst().map { Double($0.split(separator: ",")[2]) ?? .nan }
    }

    /// CKA within max |Δ| ≤ 2e-3 of the float64 reference (the bound); undefined cells
    /// (a representation identical for every image) must be NaN in both.
    func checkCKA(_ args: [String], golden: String, line: UInt = #line) throws {
        let out = tmp + "/" + golden
        let r = run(["cka"] + args + ["--images", images, "--resize", "none", "--out", out])
        XCTAssertEqual(r.status, 0, r.stderr, line: line)
        let got = try readCKA(out), want = try NpyArray(path: Fixtures.golden(golden + ".npy")).values
        XCTAssertEqual(got.count, want.count, line: line)
        // numpy gives ±inf or NaN for an undefined cell (0/0 up to rounding); vitlens writes nan.
        for (g, w) in zip(got, want) where !w.isFinite || !g.isFinite {
            XCTAssertTrue(g.isNaN && !w.isFinite, "undefined-cell mismatch: got \(g), want \(w)", line: line)
        }
        let finite = zip(got, want).filter { $0.1.isFinite }
        let c = compare(finite.map(\.0), finite.map(\.1), tolerance: 2e-3)
        XCTAssertEqual(c.violations, 0, "\(golden): \(c)", line: line)
    }

    func testSelfCKABatch4And5() throws {
        try checkCKA([a, "--batch", "4"], golden: "cka_self_b4")
        try checkCKA([a, "--batch", "5"], golden: "cka_self_b5")  // 5, 5, then 2 images: dropped
        let j = try JSONValueLite(path: tmp + "/cka_self_b5/cka.json")
        XCTAssertEqual(j.intAt("minibatches_used"), 2)
        XCTAssertTrue(j.text.contains("\"dropped_batches\": [2]"), j.text)
    }

    func testTwoModelsDifferentDepthsHeadsAndWidths() throws {
        try checkCKA([a, b, "--batch", "4"], golden: "cka_ab_b4")
        try checkCKA([a, b, "--batch", "5"], golden: "cka_ab_b5")
        try checkCKA([a, b, "--batch", "4", "--tokens", "cls"], golden: "cka_ab_b4_cls")
        try checkCKA([a, b, "--batch", "4", "--tokens", "mean"], golden: "cka_ab_b4_mean")
        // CKA(A, B) = CKA(B, A)ᵀ.
        XCTAssertEqual(
            run(["cka", b, a, "--batch", "4", "--images", images, "--resize", "none", "--out", tmp + "/ba"]).status, 0)
        let ab = try readCKA(tmp + "/cka_ab_b4"), ba = try readCKA(tmp + "/ba")
        for i in 0..<3 { for j in 0..<4 { XCTAssertEqual(ab[i * 4 + j], ba[j * 3 + i], accuracy: 1e-9) } }
    }

    /// Attention means within 1e-3 relative of the float64 reference, both conventions.
    func testAttentionBothConventions() throws {
        for convention in ["pixels", "mae-lite"] {
            let out = tmp + "/att-" + convention
            let r = run(
                ["attention", a, "--images", images, "--resize", "none", "--batch", "5", "--convention", convention,
                "--out", out])
            XCTAssertEqual(r.status, 0, r.stderr)
            let rows = try String(contentsOfFile: out + "/attention.csv", encoding: .utf8).split(separator: "\n")
            XCTAssertEqual(rows.first, "layer,head,mean_distance,mean_entropy")
            // [2 (distance, entropy), L, H]
            let want = try NpyArray(path: Fixtures.golden("attention_\(convention).npy"))
            XCTAssertEqual(want.shape, [2, 2, 2])
            for row in rows.dropFirst() {
                let f = row.split(separator: ",")
                let l = Int(f[0])! - 1, h = Int(f[1])!
                let d = Double(f[2])!, e = Double(f[3])!
                let wd = want.values[l * 2 + h], we = want.values[4 + l * 2 + h]
                XCTAssertEqual(d, wd, accuracy: 1e-3 * abs(wd), "\(convention) distance layer \(l + 1) head \(h)")
                XCTAssertEqual(e, we, accuracy: 1e-3 * abs(we), "\(convention) entropy layer \(l + 1) head \(h)")
            }
            let box = try String(contentsOfFile: out + "/attention_box.csv", encoding: .utf8).split(separator: "\n")
            XCTAssertEqual(box.first, "metric,layer,min,q1,median,q3,max,whisker_low,whisker_high,n")
            XCTAssertEqual(box.count, 1 + 2 * 2)
        }
        let per = run(
            ["attention", a, "--images", images, "--resize", "none", "--batch", "5", "--per-image", "--out", tmp
            + "/per"])
        XCTAssertEqual(per.status, 0, per.stderr)
        let box = try String(contentsOfFile: tmp + "/per/attention_box.csv", encoding: .utf8)
        XCTAssertTrue(box.split(separator: "\n")[1].hasSuffix(",24"), "12 images × 2 heads per layer: \(box)")
    }

    /// `--shard auto` takes the shard from a Slurm job array (here tasks 4–6: three shards) or a
    /// Kubernetes Indexed Job (JOB_COMPLETION_INDEX with --shards 2), as docs/cluster.md runs it;
    /// merged, the shards give the single run's report; without either, or with --shards beside
    /// i/n, one error line (exit 64).
    func testShardAutoFromSlurmAndKubernetes() throws {
        let args = ["cka", a, b, "--images", images, "--resize", "none", "--batch", "4"]
        let single = tmp + "/auto-single"
        XCTAssertEqual(run(args + ["--out", single]).status, 0)
        for (name, envs, extra) in [
            ("slurm", (4...6).map { ["SLURM_ARRAY_TASK_ID": "\($0)", "SLURM_ARRAY_TASK_MIN": "4",
                                     "SLURM_ARRAY_TASK_MAX": "6"] }, [String]()),
            ("k8s", (0..<2).map { ["JOB_COMPLETION_INDEX": "\($0)"] }, ["--shards", "2"]),
        ] {
            var dirs: [String] = []
            for (i, env) in envs.enumerated() {
                let d = tmp + "/auto-\(name)-\(i)"
                let r = runProcess(CLITests.binary, args + ["--shard", "auto", "--out", d, "--quiet"] + extra,
                                   environment: env)
                XCTAssertEqual(r.status, 0, r.stderr)
                let partial = try String(contentsOfFile: d + "/partial.json", encoding: .utf8)
                XCTAssertTrue(partial.contains("\"shard\": \"\(i)/\(envs.count)\""), partial)
                dirs.append(d)
            }
            let merged = tmp + "/auto-\(name)-merged"
            XCTAssertEqual(run(["merge"] + dirs + ["--out", merged]).status, 0)
            XCTAssertEqual(try String(contentsOfFile: merged + "/cka.csv", encoding: .utf8),
                           try String(contentsOfFile: single + "/cka.csv", encoding: .utf8), name)
        }
        for (env, extra, says) in [
            ([String: String](), [String](), "neither a Slurm job array"),
            (["JOB_COMPLETION_INDEX": "0"], [], "needs --shards N"),
            (["JOB_COMPLETION_INDEX": "2"], ["--shards", "2"], "is not below --shards 2"),
            (["SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "6",
              "SLURM_ARRAY_TASK_STEP": "2"], [], "is not one of 0-6:2"),
            (["SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "2"], ["--shards", "2"],
             "disagrees with the Slurm array"),
        ] {
            let r = runProcess(CLITests.binary, args + ["--shard", "auto"] + extra, environment: env)
            XCTAssertEqual(r.status, 64, r.stderr)
            XCTAssertTrue(r.stderr.hasPrefix("error: ") && r.stderr.contains(says), r.stderr)
        }
        // A Slurm array with a step: task 4 of 0-6:2 is shard 2 of 4.
        let env = ["SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "6",
                   "SLURM_ARRAY_TASK_STEP": "2"]
        XCTAssertEqual(try ShardSpec.fromEnvironment(env, shards: nil), ShardSpec(index: 2, count: 4))
        let r = run(args + ["--shard", "0/2", "--shards", "2"])
        XCTAssertEqual(r.status, 64, r.stderr)
    }

    /// Shards merged give the same report as one run, bit for bit (2 and 3 shards).
    func testMergingShardsEqualsTheSingleRun() throws {
        for (cmd, extra, files) in [
            ("cka", [a, b], ["cka.csv"]), ("attention", [a, "--per-image"], ["attention.csv", "attention_box.csv"])] {
            let single = tmp + "/\(cmd)-single"
            XCTAssertEqual(
                run([cmd] + extra + ["--images", images, "--resize", "none", "--batch", "4", "--out", single]).status,
                0)
            for n in [2, 3] {
                var dirs: [String] = []
                for i in 0..<n {
                    let d = tmp + "/\(cmd)-\(n)-\(i)"
                    let r = run(
                        [cmd] + extra
                        + ["--images", images, "--resize", "none", "--batch", "4", "--shard", "\(i)/\(n)", "--out", d])
                    XCTAssertEqual(r.status, 0, r.stderr)
                    XCTAssertTrue(FileManager.default.fileExists(atPath: d + "/partial.json"))
                    dirs.append(d)
                }
                let merged = tmp + "/\(cmd)-merged-\(n)"
                let m = run(["merge"] + dirs.reversed() + ["--out", merged])
                XCTAssertEqual(m.status, 0, m.stderr)
                for f in files {
                    XCTAssertEqual(try String(contentsOfFile: merged + "/" + f, encoding: .utf8),
                                   try String(contentsOfFile: single + "/" + f, encoding: .utf8),
                                       "\(cmd) \(n) shards: \(f)")
                }
                let key = cmd == "cka" ? "\"results\"" : "\"results\""
                let mj = try String(contentsOfFile: merged + "/\(cmd).json", encoding: .utf8)
                let sj = try String(contentsOfFile: single + "/\(cmd).json", encoding: .utf8)
                XCTAssertEqual(
                    mj.components(separatedBy: key).last, sj.components(separatedBy: key).last,
                    "\(cmd) results in JSON")
                if n == 3 {
                    let missing = run(["merge", dirs[0], dirs[2], "--out", tmp + "/nope"])
                    XCTAssertEqual(missing.status, 1)
                    XCTAssertTrue(missing.stderr.contains("missing shard(s) 1/3"), missing.stderr)
                }
            }
        }
        let mixed = run(["merge", tmp + "/cka-2-0", tmp + "/attention-2-1", "--out", tmp + "/nope"])
        XCTAssertEqual(mixed.status, 1)
        XCTAssertTrue(mixed.stderr.hasPrefix("error: ") && mixed.stderr.contains("cannot merge"), mixed.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp + "/nope"))
    }

    func assertFails(_ args: [String], code: Int32, mentions: String, line: UInt = #line) {
        let out = tmp + "/bad"
        let r = runProcess(CLITests.binary, args + ["--out", out])
        XCTAssertFalse(r.signalled, line: line)
        XCTAssertEqual(r.status, code, r.stderr, line: line)
        let lines = r.stderr.split(separator: "\n").filter { !$0.hasPrefix("notice:") }
        XCTAssertEqual(lines.count, 1, r.stderr, line: line)
        XCTAssertTrue(
            r.stderr.hasPrefix("error: ") && r.stderr.contains(mentions), "'\(r.stderr)' should mention '\(mentions)'",
            line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "partial report", line: line)
    }

    func testBadInput() throws {
        assertFails(["cka", a, "--images", images, "--batch", "3"], code: 64, mentions: "--batch must be at least 4")
        assertFails(["cka", a, "--images", images, "--batch", "1"], code: 64, mentions: "--batch")
        assertFails(["cka", a, "--images", images, "--num", "3"], code: 64, mentions: "--num")
        try FileManager.default.createDirectory(atPath: tmp + "/three", withIntermediateDirectories: true)
        for f in ["00_astronaut.png", "01_chelsea.png", "02_coffee.png"] {
            try FileManager.default.copyItem(atPath: images + "/" + f, toPath: tmp + "/three/" + f) }
        assertFails(["cka", a, "--images", tmp + "/three"], code: 1, mentions: "at least 4 images, found 3")
        assertFails(
            ["cka", a, Fixtures.checkpoint("tiny_p4_f32.safetensors"), "--images", images], code: 64,
            mentions: "one token grid")
        assertFails(["cka", a, "--images", tmp + "/none"], code: 1, mentions: "no such folder")
        try FileManager.default.createDirectory(atPath: tmp + "/empty", withIntermediateDirectories: true)
        assertFails(["attention", a, "--images", tmp + "/empty"], code: 1, mentions: "no PNG or JPEG images")
        assertFails(["attention", a, "--images", images, "--convention", "meters"], code: 64, mentions: "meters")
        assertFails(["attention", a, "--images", images, "--shard", "3/3"], code: 64, mentions: "3/3")
        try "x".write(toFile: tmp + "/afile", atomically: true, encoding: .utf8)
        let r = runProcess(CLITests.binary, ["attention", a, "--images", images, "--out", tmp + "/afile/sub"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.hasPrefix("error: ") && r.stderr.contains("afile/sub"), r.stderr)
        assertFails(["merge", tmp + "/empty"], code: 1, mentions: "partial.json")
        let overflow = Fixtures.checkpoint("tiny_overflow_f32.safetensors")
        assertFails(["attention", overflow, "--images", images, "--resize", "none"], code: 1,
                    mentions: "non-finite activations (NaN or inf) in the output of block 1, batch 0")
        assertFails(
            ["cka", a, overflow, "--images", images, "--resize", "none"], code: 1,
            mentions: "tiny_overflow_f32.safetensors: non-finite")
    }
}

/// Just enough JSON reading for assertions.
struct JSONValueLite {
    let text: String
    let object: [String: Any]
    init(path: String) throws {
        text = try String(contentsOfFile: path, encoding: .utf8)
        object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] ?? [:]
    }
    func intAt(_ k: String) -> Int? { object[k] as? Int }
}
