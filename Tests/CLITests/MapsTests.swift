import Foundation
import TestSupport
import XCTest

/// `vitlens maps` against float64 goldens (Tests/Fixtures/make_maps_goldens.py: timm in float64,
/// class attention and rollout from the definitions in NumPy), and `attention` from attention
/// arrays computed elsewhere against the checkpoint run.
final class MapsTests: TemporaryFolderTestCase {
    let images = Fixtures.path("images/none")

    func run(_ args: [String]) -> (status: Int32, signalled: Bool, stdout: String, stderr: String) {
        runProcess(CLITests.binary, args) }

    /// Probabilities and rollout values are at most 1; float32 forward passes differ from
    /// timm's float64 by ~1e-6 here.
    let tolerance = 1e-5

    func testClassAttentionAndRolloutMatchFloat64References() throws {
        for (ckpt, name) in [("tiny_f32.safetensors", "tiny"), ("family_dinov2reg.safetensors", "dinov2reg")] {
            for (fusion, discard) in [("mean", "0"), ("max", "0"), ("min", "0"), ("mean", "0.25")] {
                let out = tmp + "/\(name)-\(fusion)-\(discard)"
                let r = run(
                    ["maps", Fixtures.checkpoint(ckpt), "--images", images, "--resize", "none", "--fusion", fusion,
                             "--discard", discard, "--out", out, "--quiet"])
                XCTAssertEqual(r.status, 0, r.stderr)
                if fusion == "mean" && discard == "0" {
                    let cls = try NpyArray(path: out + "/cls_attention.npy"),
                        want = try NpyArray(path: Fixtures.golden("maps_\(name)_cls.npy"))
                    XCTAssertEqual(cls.shape, [4, 2, 2, 4, 4])
                    XCTAssertEqual(cls.shape, want.shape)
                    let c = compare(cls.values, want.values, tolerance: tolerance)
                    XCTAssertEqual(c.violations, 0, "\(name) class attention: \(c)")
                    // Not uniform: the test would not see a wrong token or axis otherwise.
                    XCTAssertGreaterThan(want.values.max()! / want.values.min()!, 10)
                    // maps.json's numbers from the same reference: per block the class attention on
                    // the patches (Σ over patches, mean over heads, then images); each rollout's maximum.
                    let json = try JSONSerialization.jsonObject(
                        with: Data(contentsOf: URL(fileURLWithPath: out + "/maps.json"))) as! [String: Any]
                    let results = json["results"] as! [String: Any]
                    let share = results["class_attention_on_patches"] as! [Double]
                    let (N, L, H, P) = (4, 2, 2, 16)
                    for l in 0..<L {
                        var s = 0.0
                        for n in 0..<N {
                            for h in 0..<H { for k in 0..<P { s += want.values[((n * L + l) * H + h) * P + k] } } }
                        XCTAssertEqual(share[l], s / Double(N * H), accuracy: 1e-5, "\(name) block \(l + 1) share")
                    }
                    let rollMax = (results["images"] as! [[String: Any]]).map { $0["rollout_max"] as! Double }
                    let rollWant = try NpyArray(path: Fixtures.golden("maps_\(name)_rollout_mean_0.npy")).values
                    for n in 0..<N {
                        XCTAssertEqual(
                        rollMax[n], rollWant[(n * P)..<((n + 1) * P)].max()!, accuracy: 1e-5, "\(name) image \(n)") }
                }
                let roll = try NpyArray(path: out + "/rollout.npy")
                let want = try NpyArray(path: Fixtures.golden("maps_\(name)_rollout_\(fusion)_\(discard).npy"))
                XCTAssertEqual(roll.shape, [4, 4, 4])
                let c = compare(roll.values, want.values, tolerance: tolerance)
                XCTAssertEqual(c.violations, 0, "\(name) rollout \(fusion) discard \(discard): \(c)")
            }
        }
        // The options change the maps (so the goldens above tell them apart).
        let mean = try NpyArray(path: Fixtures.golden("maps_tiny_rollout_mean_0.npy")).values
        for other in ["max_0", "min_0", "mean_0.25"] {
            let v = try NpyArray(path: Fixtures.golden("maps_tiny_rollout_\(other).npy")).values
            XCTAssertGreaterThan(zip(v, mean).map { abs($0 - $1) }.max()!, 1e-3, other)
        }
    }

    func testMapsReport() throws {
        let out = tmp + "/maps"
        let r = run(
            ["maps", Fixtures.checkpoint("tiny_f32.safetensors"), "--images", Fixtures.path("images/cka"), "--resize",
            "none", "--num", "10",
                     "--layers", "2", "--out", out])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("for 10 images"), r.stderr)
        for f in ["cls_attention.npy", "rollout.npy", "maps.json", "maps.png", "maps.svg", "index.html"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/" + f), f)
        }
        XCTAssertEqual(try NpyArray(path: out + "/cls_attention.npy").shape, [10, 2, 2, 4, 4])
        let json = try String(contentsOfFile: out + "/maps.json", encoding: .utf8)
        for key in [
            "\"blocks_drawn\": [2]", "\"fusion\": \"mean\"", "\"rollout_argmax\"", "\"images_used\": 10",
            "Abnar & Zuidema"] {
            XCTAssertTrue(json.contains(key), key)
        }
        // Eight rows drawn of ten, spread evenly (images 0, 1, 2, 3, 5, 6, 7, 8): the SVG embeds
        // image + block 2 + rollout per row.
        XCTAssertTrue(json.contains("\"images_drawn\": [0, 1, 2, 3, 5, 6, 7, 8]"), json)
        let svg = try String(contentsOfFile: out + "/maps.svg", encoding: .utf8)
        XCTAssertEqual(svg.components(separatedBy: "<image ").count - 1, 8 * 3)
        XCTAssertTrue(svg.contains("data:image/jpeg;base64,"))
        let png = try Data(contentsOf: URL(fileURLWithPath: out + "/maps.png"))
        XCTAssertEqual(Array(png.prefix(4)), [0x89, 0x50, 0x4E, 0x47])
        let html = try String(contentsOfFile: out + "/index.html", encoding: .utf8)
        XCTAssertTrue(html.contains("keepdim"), "the page says how rollout relates to vit-explain")

        for (args, code, says) in [
            (["--layers", "3"], Int32(64), "--layers 3"), (["--discard", "1"], 64, "--discard must be in [0, 1)"),
                                   (["--fusion", "median"], 64, "median"),
                                       (["--num", "0"], 64, "--num must be at least 1"),
                                   (["--skip-bad-images"], 64, "--skip-bad-images does not go with maps")] {
            let bad = run(
                ["maps", Fixtures.checkpoint("tiny_f32.safetensors"), "--images", images, "--out", tmp + "/bad"] + args)
            XCTAssertEqual(bad.status, code, bad.stderr)
            XCTAssertTrue(
                bad.stderr.hasPrefix("error: ") && bad.stderr.contains(says)
                && bad.stderr.split(separator: "\n").count == 1, bad.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: tmp + "/bad"))
        }
    }

    /// attention from an extract folder or its attention.npy gives the checkpoint's report.
    func testAttentionFromArrays() throws {
        let ckpt = Fixtures.checkpoint("family_dinov2reg.safetensors"), eval = Fixtures.path("images/cka")
        XCTAssertEqual(
            run(["extract", ckpt, "--images", eval, "--resize", "none", "--num", "10", "--batch", "4", "--out", tmp
            + "/ex", "--quiet"]).status, 0)
        XCTAssertEqual(
            run(["attention", ckpt, "--images", eval, "--resize", "none", "--num", "10", "--batch", "4", "--out", tmp
            + "/ref", "--quiet"]).status, 0)
        let ref = try String(contentsOfFile: tmp + "/ref/attention.csv", encoding: .utf8)
        for (args, name) in [
            ([tmp + "/ex"], "folder"),
            ([tmp + "/ex/attention.npy", "--prefix-tokens", "5", "--patch-size", "8"], "npy")] {
            let r = run(["attention"] + args + ["--batch", "4", "--out", tmp + "/" + name, "--quiet"])
            XCTAssertEqual(r.status, 0, "\(name): \(r.stderr)")
            XCTAssertEqual(try String(contentsOfFile: tmp + "/\(name)/attention.csv", encoding: .utf8), ref, name)
        }
        // Overlaid with a checkpoint run on the images: the array's numbers are its own report's.
        let mixed = run(
            ["attention", Fixtures.checkpoint("family_dinov2.safetensors"), tmp + "/ex", "--images", eval, "--resize",
            "none", "--num", "10",
                         "--batch", "4", "--out", tmp + "/mixed", "--quiet"])
        XCTAssertEqual(mixed.status, 0, mixed.stderr)
        XCTAssertEqual(try String(contentsOfFile: tmp + "/mixed/compare/attention.csv", encoding: .utf8), ref)
        // mae-lite's convention needs no patch size.
        XCTAssertEqual(
            run(["attention", tmp + "/ex/attention.npy", "--prefix-tokens", "5", "--convention", "mae-lite", "--out",
            tmp + "/ml", "--quiet"]).status, 0)

        func fails(_ args: [String], code: Int32 = 1, _ mentions: String, line: UInt = #line) {
            let r = run(["attention"] + args + ["--out", tmp + "/x"])
            XCTAssertEqual(r.status, code, r.stderr, line: line)
            XCTAssertTrue(
                r.stderr.hasPrefix("error: ") && r.stderr.contains(mentions)
                && r.stderr.split(separator: "\n").count == 1,
                          "'\(r.stderr)' should mention '\(mentions)'", line: line)
            XCTAssertFalse(FileManager.default.fileExists(atPath: tmp + "/x"), "no report", line: line)
        }
        let npy = tmp + "/ex/attention.npy"
        fails([npy], code: 64, "needs --prefix-tokens")
        fails([npy, "--prefix-tokens", "5"], code: 64, "--patch-size")
        fails([npy, "--prefix-tokens", "4", "--patch-size", "8"], "not a square grid")
        fails([npy, "--prefix-tokens", "21", "--patch-size", "8"], "21 prefix tokens, but only 21 tokens")
        fails([ckpt, npy, "--prefix-tokens", "5", "--patch-size", "8", "--images", eval, "--resize", "none", "--num",
            "6"], "holds the attention of 10 images, but the image folder gives 6")
        fails([tmp + "/ex/features.npy", "--prefix-tokens", "5", "--patch-size", "8"],
            "attention must be [L, N, H, T, T]")
        // Values that are no probabilities: a negative one, a patch row without weight.
        let a = try NpyArray(path: npy)
        var v = a.values
        v[100] = -0.5
        try writeNpy(tmp + "/neg.npy", shape: a.shape, values: v)
        fails([tmp + "/neg.npy", "--prefix-tokens", "5", "--patch-size", "8"], "-0.5 is not a probability")
        v = a.values
        let T = a.shape[3]
        for k in 5..<T { v[(5 * T) + k] = 0 }  // block 1, image 0, head 0, query token 5 (patch 0)
        try writeNpy(tmp + "/zero.npy", shape: a.shape, values: v)
        fails([tmp + "/zero.npy", "--prefix-tokens", "5", "--patch-size", "8"],
            "patch query 0 of head 0, block 1, image 0 gives the patch keys no weight")
        XCTAssertEqual(
            run(["extract", ckpt, "--images", eval, "--resize", "none", "--num", "4", "--no-attention", "--out", tmp
            + "/noatt", "--quiet"]).status, 0)
        fails([tmp + "/noatt"], "it ran with --no-attention")
    }
}
