import Analysis
import Engine
import Foundation
import Images
import Lens
import Render
import TestSupport
import Train
import VitLensCore
import XCTest

/// `vitlens probe` end to end on synthetic labelled images (ImageFolder PNGs and CIFAR binary
/// files written here); the solver itself is checked against scikit-learn in TrainTests.
final class ProbeCLITests: XCTestCase {
    var tmp = ""
    let a = Fixtures.checkpoint("tiny_f32.safetensors"), b = Fixtures.checkpoint("tiny2_f32.safetensors")

    override func setUpWithError() throws {
        tmp = NSTemporaryDirectory() + "vitlens-probe-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: tmp) }

    /// A 32x32 RGB image of class c: a class-specific pattern plus seeded noise.
    func pixels(_ c: Int, _ i: Int) -> [UInt8] {
        var s = UInt64(c * 1000 + i + 1) &* 0x9E37_79B9_7F4A_7C15
        var px = [UInt8](repeating: 0, count: 32 * 32 * 3)
        for y in 0..<32 {
            for x in 0..<32 {
                s = s &* 6364136223846793005 &+ 1442695040888963407
                let noise = Int(s >> 58)  // 0…63
                let base: (Int, Int, Int)
                switch c % 3 {
                case 0: base = (150 + x * 3, 60, 40)
                case 1: base = ((y / 4) % 2 == 0 ? 200 : 40, 120, 90)
                default: base = (60, ((x / 4 + y / 4) % 2 == 0) ? 210 : 30, 160 + c)
                }
                let k = 3 * (y * 32 + x)
                px[k] = UInt8(min(255, base.0 + noise)); px[k + 1] = UInt8(min(255, base.1 + noise)); px[k + 2] = UInt8(
                    min(255, base.2 + noise))
            }
        }
        return px
    }

    func writePNG(_ px: [UInt8], to path: String) throws {
        var canvas = Canvas(width: 32, height: 32)
        for y in 0..<32 { for x in 0..<32 {
            let k = 3 * (y * 32 + x)
            canvas.fill(
                x0: Double(x), y0: Double(y), x1: Double(x + 1), y1: Double(y + 1), Color(px[k], px[k + 1], px[k + 2]))
        } }
        try Data(try canvas.png()).write(to: URL(fileURLWithPath: path))
    }

    func makeFolder(_ dir: String, classes: [String], per: Int, offset: Int = 0) throws {
        for (c, name) in classes.enumerated() {
            try FileManager.default.createDirectory(atPath: dir + "/" + name, withIntermediateDirectories: true)
            for i in 0..<per {
                try writePNG(pixels(c, i + offset), to: "\(dir)/\(name)/\(String(format: "%03d", i)).png") }
        }
    }

    func run(_ args: [String]) -> (status: Int32, signalled: Bool, stdout: String, stderr: String) {
        runProcess(CLITests.binary, args + ["--quiet"])
    }

    func csv(_ path: String) throws -> [[String]] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map {
            $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
    }

    func testSplitTwoModelsDeterministic() throws {
        try makeFolder(tmp + "/data", classes: ["reds", "stripes", "checks"], per: 8)
        let out = tmp + "/p1"
        let r = run(
            ["probe", a, b, "--train", tmp + "/data", "--split", "0.25", "--resize", "none", "--batch", "5", "--out",
            out])
        XCTAssertEqual(r.status, 0, r.stderr)
        let rows = try csv(out + "/probe.csv")
        XCTAssertEqual(
            rows.first,
            ["model", "layers_kept", "train_accuracy", "test_accuracy", "test_accuracy_ci_low",
            "test_accuracy_ci_high"])
        XCTAssertEqual(
            rows.dropFirst().map { $0[0] + "/" + $0[1] },
            ["tiny_f32/1", "tiny_f32/2", "tiny2_f32/1", "tiny2_f32/2", "tiny2_f32/3"])
        for row in rows.dropFirst() {
            for v in row[2...].map({ Double($0)! }) { XCTAssertTrue(v >= 0 && v <= 1, "\(row)") }
            // 6 test images (2 per class): accuracies are multiples of 1/6.
            XCTAssertEqual((Double(row[3])! * 6).rounded(), Double(row[3])! * 6, accuracy: 1e-6)
        }
        for f in ["probe.json", "probe.png", "probe.svg", "index.html"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/" + f), f) }
        let json = try String(contentsOfFile: out + "/probe.json", encoding: .utf8)
        for s in [
            "\"per_class\": [6, 6, 6]", "\"per_class\": [2, 2, 2]", "\"converged\": true", "C = 1", "\"split\": 0.25"] {
            XCTAssertTrue(json.contains(s), "probe.json lacks \(s)")
        }
        XCTAssertTrue(try String(contentsOfFile: out + "/probe.svg", encoding: .utf8).contains("tiny2_f32 test"))
        // Same seed, same everything: bit-identical CSV. Another seed: another split.
        let out2 = tmp + "/p2"
        XCTAssertEqual(
            run(["probe", a, b, "--train", tmp + "/data", "--split", "0.25", "--resize", "none", "--batch", "7",
            "--out", out2]).status, 0)
        XCTAssertEqual(
            try String(contentsOfFile: out + "/probe.csv", encoding: .utf8),
            try String(contentsOfFile: out2 + "/probe.csv", encoding: .utf8))
        let out3 = tmp + "/p3"
        XCTAssertEqual(
            run(["probe", a, "--train", tmp + "/data", "--split", "0.25", "--seed", "5", "--resize", "none", "--out",
            out3]).status, 0)
        let j3 = try String(contentsOfFile: out3 + "/probe.json", encoding: .utf8)
        XCTAssertNotEqual(j3.components(separatedBy: "\"test\"").last, json.components(separatedBy: "\"test\"").last)
        XCTAssertEqual(
            try csv(out3 + "/probe.csv").first,
            ["layers_kept", "train_accuracy", "test_accuracy", "test_accuracy_ci_low", "test_accuracy_ci_high"],
            "one model: no model column")
    }

    func testTrainTestFoldersAndClassChecks() throws {
        try makeFolder(tmp + "/train", classes: ["x", "y"], per: 6)
        try makeFolder(tmp + "/test", classes: ["x", "y"], per: 3, offset: 50)
        let r = run(
            ["probe", a, "--train", tmp + "/train", "--test", tmp + "/test", "--resize", "none", "--pool", "cls",
            "--out", tmp + "/ok"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try csv(tmp + "/ok/probe.csv").count, 3)

        func fails(_ args: [String], code: Int32 = 1, _ mentions: String, line: UInt = #line) {
            let out = tmp + "/bad"
            let r = runProcess(CLITests.binary, ["probe", a, "--resize", "none", "--out", out] + args)
            XCTAssertFalse(r.signalled, line: line)
            XCTAssertEqual(r.status, code, r.stderr, line: line)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr, line: line)
            XCTAssertTrue(
                r.stderr.hasPrefix("error: ") && r.stderr.contains(mentions),
                "'\(r.stderr)' should mention '\(mentions)'", line: line)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "partial report", line: line)
        }
        try makeFolder(tmp + "/test3", classes: ["x", "y", "z"], per: 2)
        fails(["--train", tmp + "/train", "--test", tmp + "/test3"], "not in the train set")
        try makeFolder(tmp + "/test1", classes: ["x"], per: 2)
        fails(["--train", tmp + "/train", "--test", tmp + "/test1"], "needs at least 2 class subfolders")
        try makeFolder(tmp + "/testxw", classes: ["x", "w"], per: 2)
        fails(["--train", tmp + "/train", "--test", tmp + "/testxw"], "train: w")
        fails(["--train", tmp + "/test3", "--test", tmp + "/train"], "no test images for class(es) of the train set: z")
        try makeFolder(tmp + "/one", classes: ["only"], per: 4)
        fails(["--train", tmp + "/one", "--split", "0.5"], "ImageFolder layout: DIR/<class>/<image>), found 1")
        try makeFolder(tmp + "/withempty", classes: ["p", "q"], per: 3)
        try FileManager.default.createDirectory(atPath: tmp + "/withempty/r", withIntermediateDirectories: true)
        fails(["--train", tmp + "/withempty", "--split", "0.3"], "withempty/r: class folder has no PNG or JPEG images")
        try makeFolder(tmp + "/single", classes: ["p", "q"], per: 1)
        fails(["--train", tmp + "/single", "--split", "0.3"], "at least 2 images per class")
        fails(["--train", tmp + "/train"], code: 64, "either --test DIR or --split")
        fails(["--train", tmp + "/train", "--test", tmp + "/test", "--split", "0.2"], code: 64,
            "either --test DIR or --split")
        fails(["--train", tmp + "/train", "--split", "1.5"], code: 64, "--split must be between 0 and 1")
        fails([], code: 64, "exactly one of --train")
        fails(["--train", tmp + "/train", "--cifar10", tmp], code: 64, "exactly one of")
        fails(["--train", tmp + "/train", "--split", "0.3", "--limit-train", "1"], "has no train images")
        fails(["--train", tmp + "/missing", "--split", "0.3"], "no such folder")
    }

    func writeCIFAR(_ dir: String, files: [String], records: Int, labelBytes: Int, classes: Int) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var n = 0
        for f in files {
            var data = Data()
            for _ in 0..<records {
                let label = n % classes
                if labelBytes == 2 { data.append(UInt8(label / 5)) }
                data.append(UInt8(label))
                let px = pixels(label, n)
                for ch in 0..<3 { for p in 0..<1024 { data.append(px[3 * p + ch]) } }  // planar R, G, B
                n += 1
            }
            try data.write(to: URL(fileURLWithPath: dir + "/" + f))
        }
    }

    func testCIFARBinaries() throws {
        let c10 = tmp + "/cifar-10-batches-bin"
        try writeCIFAR(c10, files: (1...5).map { "data_batch_\($0).bin" }, records: 4, labelBytes: 1, classes: 10)
        try writeCIFAR(c10, files: ["test_batch.bin"], records: 10, labelBytes: 1, classes: 10)
        try (["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"].joined(
            separator: "\n") + "\n")
            .write(toFile: c10 + "/batches.meta.txt", atomically: true, encoding: .utf8)
        // The folder holding cifar-10-batches-bin is accepted too.
        let r = run(["probe", a, "--cifar10", tmp, "--resize", "none", "--out", tmp + "/c10"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try String(contentsOfFile: tmp + "/c10/probe.json", encoding: .utf8)
        XCTAssertTrue(
            json.contains("\"truck\"") && json.contains("\"train\": 20") && json.contains("\"test\": 10"), json)

        let c100 = tmp + "/c100"
        try writeCIFAR(c100, files: ["train.bin"], records: 200, labelBytes: 2, classes: 100)
        try writeCIFAR(c100, files: ["test.bin"], records: 100, labelBytes: 2, classes: 100)
        let r100 = run(
            ["probe", a, "--cifar100", c100, "--resize", "none", "--limit-test", "50", "--out", tmp + "/c100out"])
        XCTAssertEqual(r100.status, 0, r100.stderr)
        XCTAssertTrue(try String(contentsOfFile: tmp + "/c100out/probe.json", encoding: .utf8).contains("\"class_99\""))

        // A truncated batch file and a label out of range are named.
        let fh = try FileHandle(forWritingTo: URL(fileURLWithPath: c10 + "/data_batch_3.bin"))
        try fh.truncate(atOffset: 3073 * 2 + 100)
        try fh.close()
        let bad = runProcess(
            CLITests.binary, ["probe", a, "--cifar10", c10, "--resize", "none", "--out", tmp + "/nope"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(
            bad.stderr.hasPrefix("error: ") && bad.stderr.contains("data_batch_3.bin")
            && bad.stderr.contains("not a whole number"), bad.stderr)
        try writeCIFAR(c10, files: ["data_batch_3.bin"], records: 4, labelBytes: 1, classes: 10)
        var t = try Data(contentsOf: URL(fileURLWithPath: c10 + "/test_batch.bin"))
        t[3073] = 42
        try t.write(to: URL(fileURLWithPath: c10 + "/test_batch.bin"))
        let bad2 = runProcess(
            CLITests.binary, ["probe", a, "--cifar10", c10, "--resize", "none", "--out", tmp + "/nope"])
        XCTAssertEqual(bad2.status, 1)
        XCTAssertTrue(bad2.stderr.contains("record 1 has label 42"), bad2.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp + "/nope"))
    }

    /// Fine-tuning: the loss falls, test accuracy is well above chance, the same seed gives the
    /// same checkpoint bit for bit, and the checkpoint loads in every command.
    func testFinetuneSaveReproducible() throws {
        try makeFolder(tmp + "/data", classes: ["reds", "stripes", "checks"], per: 10)
        func finetune(_ save: String, _ out: String, seed: String = "0") -> (
            status: Int32, signalled: Bool, stdout: String, stderr: String) {
            run(["finetune", a, "--train", tmp + "/data", "--split", "0.3", "--seed", seed, "--resize", "none",
                "--epochs", "12",
                 "--lr", "3e-3", "--warmup-epochs", "1", "--train-batch", "7", "--save", save, "--out", out])
        }
        let r1 = finetune(tmp + "/m1.safetensors", tmp + "/f1")
        XCTAssertEqual(r1.status, 0, r1.stderr)
        let r2 = finetune(tmp + "/m2.safetensors", tmp + "/f2")
        XCTAssertEqual(r2.status, 0, r2.stderr)
        let m1 = FileManager.default.contents(atPath: tmp + "/m1.safetensors"),
            m2 = FileManager.default.contents(atPath: tmp + "/m2.safetensors")
        XCTAssertNotNil(m1)
        XCTAssertEqual(m1, m2, "same seed, same checkpoint bit for bit")
        let header = String(decoding: (m1 ?? Data()).prefix(4096), as: UTF8.self)
        for key in ["\"num_heads\":\"2\"", "\"layer_norm_eps\":\"1e-06\"", "\"head.weight\"", "\"classes\""] {
            XCTAssertTrue(header.contains(key), "checkpoint header lacks \(key)")
        }
        let rows = try csv(tmp + "/f1/finetune.csv")
        XCTAssertEqual(rows.first, ["epoch", "train_loss", "train_accuracy_running", "learning_rate", "seconds"])
        let losses = rows.dropFirst().map { Double($0[1])! }
        XCTAssertEqual(losses.count, 12)
        XCTAssertLessThan(losses.last!, 0.5 * losses.first!, "loss falls: \(losses)")
        XCTAssertEqual(
            try csv(tmp + "/f1/finetune.csv").map { $0.prefix(4) },
            try csv(tmp + "/f2/finetune.csv").map { $0.prefix(4) })
        let json = try JSONValueLite(path: tmp + "/f1/finetune.json")
        let results = json.object["results"] as! [String: Any]
        let test = results["test_accuracy"] as! Double
        XCTAssertGreaterThanOrEqual(test, 0.8, "test accuracy \(test), chance 1/3")
        // The checkpoint loads everywhere: inspect, and a probe of it.
        let inspect = runProcess(CLITests.binary, ["inspect", tmp + "/m1.safetensors"])
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        XCTAssertTrue(inspect.stdout.contains("from safetensors metadata num_heads"), inspect.stdout)
        XCTAssertEqual(
            run(["probe", tmp + "/m1.safetensors", "--train", tmp + "/data", "--split", "0.3", "--resize", "none",
            "--out", tmp + "/pm"]).status, 0)
        // Another seed, another run.
        XCTAssertEqual(finetune(tmp + "/m3.safetensors", tmp + "/f3", seed: "9").status, 0)
        XCTAssertNotEqual(FileManager.default.contents(atPath: tmp + "/m3.safetensors"), m1)
        // Truncated to one block: a 1-block checkpoint.
        XCTAssertEqual(
            run(["finetune", a, "--train", tmp + "/data", "--split", "0.3", "--resize", "none", "--epochs", "1",
            "--layers", "1",
                            "--save", tmp + "/m1b.safetensors", "--out", tmp + "/f1b"]).status, 0)
        XCTAssertTrue(runProcess(CLITests.binary, ["inspect", tmp + "/m1b.safetensors"]).stdout.contains("depth 1"))
    }

    func testFinetuneDivergesCleanlyAndProbeFinetune() throws {
        try makeFolder(tmp + "/data", classes: ["reds", "stripes"], per: 6)
        let save = tmp + "/nan.safetensors", out = tmp + "/fnan"
        let r = runProcess(
            CLITests.binary,
            ["finetune", a, "--train", tmp + "/data", "--split", "0.3", "--resize", "none", "--epochs", "3",
                                             "--lr", "1e30", "--warmup-epochs", "0", "--save", save, "--out", out,
                                                 "--quiet"])
        XCTAssertFalse(r.signalled)
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.hasPrefix("error: fine-tuning diverged") && r.stderr.contains("at step"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: save), "no half-written checkpoint")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "no partial report")
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: tmp).filter { $0.contains("vitlens-tmp") }, [])

        let p = run(
            ["probe", a, b, "--train", tmp + "/data", "--split", "0.3", "--resize", "none", "--finetune", "--layers",
            "1,2",
                     "--epochs", "2", "--out", tmp + "/pf"])
        XCTAssertEqual(p.status, 0, p.stderr)
        XCTAssertEqual(
            try csv(tmp + "/pf/probe.csv").dropFirst().map { $0[0] + "/" + $0[1] },
            ["tiny_f32/1", "tiny_f32/2", "tiny2_f32/1", "tiny2_f32/2"])
        XCTAssertTrue(
            try String(contentsOfFile: tmp + "/pf/probe.json", encoding: .utf8).contains("\"mode\": \"finetune\""))
        let bad = runProcess(
            CLITests.binary,
            ["probe", a, "--train", tmp + "/data", "--split", "0.3", "--finetune", "--layers", "5", "--out", tmp
            + "/x"])
        XCTAssertEqual(bad.status, 64, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("--layers 5"), bad.stderr)
    }
}
