import Foundation
import TestSupport
import XCTest

/// Figures and index.html beside every report, and `vitlens plot` redrawing them (docs/reference.md, "Figures").
final class FigureCLITests: XCTestCase {
    var tmp = ""
    let images = Fixtures.path("images/cka")
    let a = Fixtures.checkpoint("tiny_f32.safetensors"), b = Fixtures.checkpoint("tiny2_f32.safetensors")

    override func setUpWithError() throws {
        tmp = NSTemporaryDirectory() + "vitlens-fig-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: tmp) }

    func run(_ args: [String]) -> (status: Int32, signalled: Bool, stdout: String, stderr: String) {
        runProcess(CLITests.binary, args + ["--quiet"])
    }

    func text(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    func pngSize(_ path: String) -> (Int, Int)? {
        guard let d = FileManager.default.contents(atPath: path), d.count > 24,
            d.prefix(8) == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) else { return nil }
        let b = [UInt8](d)
        func be(_ o: Int) -> Int { Int(b[o]) << 24 | Int(b[o + 1]) << 16 | Int(b[o + 2]) << 8 | Int(b[o + 3]) }
        return (be(16), be(20))
    }

    func testCKAFiguresAndPlotRestyle() throws {
        let out = tmp + "/cka"
        let r = run(["cka", a, b, "--images", images, "--resize", "none", "--batch", "4", "--out", out])
        XCTAssertEqual(r.status, 0, r.stderr)
        guard let (w, h) = pngSize(out + "/cka.png") else { return XCTFail("cka.png is not a PNG") }
        XCTAssertGreaterThanOrEqual(w, 800)
        XCTAssertGreaterThanOrEqual(h, 600)
        let svg = text(out + "/cka.svg")
        XCTAssertTrue(
            svg.contains("<text") && svg.contains("tiny_f32: layer") && svg.contains("tiny2_f32: layer"),
            "axis titles carry the model names")
        XCTAssertTrue(
            svg.contains("minibatch 4") && svg.range(of: "N = [0-9]+ images", options: .regularExpression) != nil,
            "title carries N and the batch")
        let html = text(out + "/index.html")
        XCTAssertTrue(
            html.hasPrefix("<!DOCTYPE html>") && html.contains("<svg") && html.contains("unbiased HSIC")
            && html.contains("sha256"), "index.html")
        XCTAssertFalse(
            html.contains("http://") && !html.contains("xmlns=\"http://www.w3.org/2000/svg\""), "no network resources")

        // plot: the same files again, byte for byte, from the CSV/JSON alone.
        let again = tmp + "/cka-again"
        XCTAssertEqual(run(["plot", out, "--out", again]).status, 0)
        XCTAssertEqual(text(again + "/cka.svg"), svg)
        XCTAssertEqual(
            FileManager.default.contents(atPath: again + "/cka.png"),
            FileManager.default.contents(atPath: out + "/cka.png"))
        // Restyled in place: range, title, scale.
        let csvBefore = text(out + "/cka.csv")
        let p = run(["plot", out, "--vmin", "0.5", "--vmax", "1", "--title", "My title", "--scale", "2"])
        XCTAssertEqual(p.status, 0, p.stderr)
        XCTAssertTrue(text(out + "/cka.svg").contains(">My title<") && text(out + "/cka.svg").contains(">0.5<"))
        XCTAssertEqual(pngSize(out + "/cka.png")?.0, 2 * w)
        XCTAssertEqual(text(out + "/cka.csv"), csvBefore, "numbers untouched")
        XCTAssertFalse(FileManager.default.fileExists(atPath: again + "/cka.csv"), "plot --out writes figures only")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: tmp).filter { $0.contains("vitlens-tmp") }
        XCTAssertEqual(leftovers, [])
    }

    func testAttentionFiguresWithCompare() throws {
        let out = tmp + "/att"
        let r = run(
            ["attention", a, "--compare", b, "--images", images, "--resize", "none", "--batch", "4", "--out", out])
        XCTAssertEqual(r.status, 0, r.stderr)
        for f in [
            "attention_distance.png", "attention_distance.svg", "attention_entropy.png", "attention_entropy.svg",
            "index.html",
                  "attention.csv", "compare/attention.csv", "compare/attention_box.csv", "compare/attention.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/" + f), f)
        }
        let svg = text(out + "/attention_distance.svg")
        XCTAssertTrue(svg.contains("tiny_f32") && svg.contains("tiny2_f32"), "both models in the legend")
        XCTAssertTrue(svg.contains("mean attention distance (pixels)"), "y axis with its unit")
        XCTAssertTrue(text(out + "/attention_entropy.svg").contains("(nats)"))
        // The main report's numbers equal a run without --compare.
        let solo = tmp + "/solo"
        XCTAssertEqual(
            run(["attention", a, "--images", images, "--resize", "none", "--batch", "4", "--out", solo]).status, 0)
        XCTAssertEqual(text(solo + "/attention.csv"), text(out + "/attention.csv"))
        let soloB = tmp + "/soloB"
        XCTAssertEqual(
            run(["attention", b, "--images", images, "--resize", "none", "--batch", "4", "--out", soloB]).status, 0)
        XCTAssertEqual(text(soloB + "/attention.csv"), text(out + "/compare/attention.csv"))
        // plot --compare overlays two separate reports the same way.
        let overlay = tmp + "/overlay"
        XCTAssertEqual(run(["plot", solo, "--compare", soloB, "--out", overlay]).status, 0)
        XCTAssertEqual(text(overlay + "/attention_distance.svg"), svg)
    }

    func assertPlotFails(_ dir: String, mentions: String, line: UInt = #line) {
        let r = runProcess(CLITests.binary, ["plot", dir])
        XCTAssertFalse(r.signalled, line: line)
        XCTAssertEqual(r.status, 1, r.stderr, line: line)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr, line: line)
        XCTAssertTrue(
            r.stderr.hasPrefix("error: ") && r.stderr.contains(mentions), "'\(r.stderr)' should mention '\(mentions)'",
            line: line)
    }

    func testPlotBadInput() throws {
        let d = tmp + "/bad"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        assertPlotFails(d, mentions: "not a vitlens report folder")
        assertPlotFails(tmp + "/missing", mentions: "no such report folder")
        for (body, mentions) in [
            ("", "empty CSV"), ("layer_a,layer_b,cka\n", "no rows"), ("layer_a,layer_b\n0,0\n", "no column 'cka'"),
                                 ("layer_a,layer_b,cka\n0,0,1\n0,1\n", "cka.csv:3"),
                                     ("layer_a,layer_b,cka\n0,0,abc\n", "'abc' is not a number"),
                                 ("layer_a,layer_b,cka\n0,0,1\n1,1,1\n", "a 2×2 matrix needs 4"),
                                     ("layer_a,layer_b,cka\n0,0,1\n0,0,1\n1,0,1\n1,1,1\n", "appears twice"),
                                 ("layer_a,layer_b,cka\n-1,0,1\n", "out of range"),
                                     ("\u{FF}\u{FE}garbage\"", "stray quote")] {
            try body.write(toFile: d + "/cka.csv", atomically: true, encoding: .utf8)
            assertPlotFails(d, mentions: mentions)
        }
        // NaN cells draw (in the undefined colour, listed), never crash.
        try "layer_a,layer_b,cka\n0,0,1\n0,1,nan\n1,0,nan\n1,1,1\n".write(
            toFile: d + "/cka.csv", atomically: true, encoding: .utf8)
        let r = run(["plot", d])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(text(d + "/cka.svg").contains("undefined (NaN), 2 cells (row, column): (0, 1), (1, 0)"))
        try "{ not json".write(toFile: d + "/cka.json", atomically: true, encoding: .utf8)
        assertPlotFails(d, mentions: "cka.json")
        try FileManager.default.removeItem(atPath: d + "/cka.json")
        try "layer,head,mean_distance,mean_entropy\n1,0,3,nope\n".write(
            toFile: d + "/attention.csv", atomically: true, encoding: .utf8)
        try FileManager.default.removeItem(atPath: d + "/cka.csv")
        assertPlotFails(d, mentions: "mean_entropy 'nope'")
        let v = runProcess(CLITests.binary, ["plot", d, "--vmin", "1", "--vmax", "0"])
        XCTAssertEqual(v.status, 64, v.stderr)
    }
}
