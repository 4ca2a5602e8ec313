import Foundation
import TestSupport
import XCTest

/// --precision bf16 end to end: the accuracy the README states (CKA within 1e-2 of float32 for
/// every layer pair, attention means within 1e-3 relative, probe accuracies within one test
/// image) on the bundled ViT-Tiny checkpoints, the JSON's record, and the one-line refusal where
/// the CPU lacks AVX512_BF16 (simulated with VITLENS_CPU_NO_BF16, so it is tested everywhere).
final class PrecisionCLITests: TemporaryFolderTestCase {
    let root = Fixtures.packageRoot + "/checkpoints/"
    func run(_ args: [String], environment: [String: String]? = nil) -> (
        status: Int32, signalled: Bool, stdout: String, stderr: String) {
        runProcess(CLITests.binary, args, environment: environment)
    }
    var bf16Here: Bool {
        (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?.contains("avx512_bf16") ?? false }

    func column(_ file: String, _ name: String) throws -> [Double] {
        let lines = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n")
        let header = lines[0].split(separator: ",").map(String.init)
        let k = try XCTUnwrap(header.firstIndex(of: name))
        return lines.dropFirst().map { Double($0.split(separator: ",", omittingEmptySubsequences: false)[k]) ?? .nan }
    }

    func testBF16AgreesWithFloat32() throws {
        guard bf16Here else { throw XCTSkip("no AVX512_BF16 on this CPU") }
        let init0 = root + "vit_tiny_init.safetensors", mae = root + "vit_tiny_mae_demo.safetensors"
        for p in ["f32", "bf16"] {
            for (cmd, args) in [("cka", [init0, mae, "--bootstrap", "0"]), ("attention", [mae])] {
                let r = run(
                    [cmd] + args
                    + ["--images", root + "images", "--num", "16", "--batch", "8", "--precision", p, "--out", tmp
                    + "/\(cmd)-\(p)", "--quiet"])
                XCTAssertEqual(r.status, 0, r.stderr)
            }
        }
        let a = try column(tmp + "/cka-f32/cka.csv", "cka"), b = try column(tmp + "/cka-bf16/cka.csv", "cka")
        XCTAssertEqual(a.count, 13 * 13)
        XCTAssertLessThan(zip(a, b).map { abs($0 - $1) }.max()!, 1e-2)
        XCTAssertGreaterThan(zip(a, b).map { abs($0 - $1) }.max()!, 0, "bf16 really ran")
        for m in ["mean_distance", "mean_entropy"] {
            let x = try column(tmp + "/attention-f32/attention.csv", m),
                y = try column(tmp + "/attention-bf16/attention.csv", m)
            XCTAssertLessThan(zip(x, y).map { abs($0 - $1) / abs($0) }.max()!, 1e-3, m)
        }
        let json = try String(contentsOfFile: tmp + "/cka-bf16/cka.json", encoding: .utf8)
        XCTAssertTrue(
            json.contains("\"precision\": \"bf16: linear layers with bfloat16 weights"),
            "the JSON records the precision")
        XCTAssertTrue(
            try String(contentsOfFile: tmp + "/cka-f32/cka.json", encoding: .utf8).contains("\"precision\": \"f32\""))

        for p in ["f32", "bf16"] {
            let r = run(
                ["probe", mae, "--train", root + "probe_images", "--split", "0.25", "--batch", "32", "--precision", p,
                "--out", tmp + "/probe-\(p)", "--quiet"])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        let t32 = try column(tmp + "/probe-f32/probe.csv", "test_accuracy"),
            t16 = try column(tmp + "/probe-bf16/probe.csv", "test_accuracy")
        XCTAssertLessThanOrEqual(
            zip(t32, t16).map { abs($0 - $1) }.max()!, 1.0 / 24 + 1e-9, "within one of the 24 test images")
    }

    func testRefusedWhereTheCPULacksIt() {
        for args in [["cka", root + "vit_tiny_init.safetensors", "--images", root + "images", "--out", tmp + "/x"],
                     ["extract", root + "vit_tiny_init.safetensors", "--images", root + "images", "--out", tmp + "/x"],
                     ["bench", root + "vit_tiny_init.safetensors"]] {
            let r = run(args + ["--precision", "bf16"], environment: ["VITLENS_CPU_NO_BF16": "1"])
            XCTAssertEqual(r.status, 64, r.stderr)
            XCTAssertEqual(
                r.stderr,
                "error: --precision bf16: this CPU has no AVX512_BF16 (lscpu lists avx512_bf16 where it has)\n")
            XCTAssertFalse(FileManager.default.fileExists(atPath: tmp + "/x"))
        }
        for args in [
            ["finetune", root + "vit_tiny_init.safetensors", "--train", root + "probe_images", "--split", "0.25"],
                     ["probe", root + "vit_tiny_init.safetensors", "--train", root + "probe_images", "--split", "0.25",
                         "--finetune"],
                     ["bench", root + "vit_tiny_init.safetensors", "--train"]] {
            let r = run(args + ["--precision", "bf16"])
            XCTAssertEqual(r.status, 64, r.stderr)
            XCTAssertTrue(r.stderr.contains("--precision bf16 is for the forward engine"), r.stderr)
        }
    }
}
