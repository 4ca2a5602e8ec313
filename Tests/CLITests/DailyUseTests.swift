import Foundation
import TestSupport
import XCTest

/// A researcher's daily use: bad values named by their option (exit 64), honest head counts,
/// reports never lost or mixed, inspect showing what a file records, readable numbers.
final class DailyUseTests: TemporaryFolderTestCase {
    let images = Fixtures.path("images/cka")
    let a = Fixtures.checkpoint("tiny_f32.safetensors"), b = Fixtures.checkpoint("tiny2_f32.safetensors")



    /// Runs the binary in `cwd` (default: the temporary folder, so default report folders land there).
    func run(_ args: [String], cwd: String? = nil) -> (status: Int32, stdout: String, stderr: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLITests.binary)
        p.arguments = args
        p.currentDirectoryURL = URL(fileURLWithPath: cwd ?? tmp)
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try? p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    func assertUsage(_ args: [String], mentions: String, line: UInt = #line) {
        let r = run(args)
        XCTAssertEqual(r.status, 64, "\(args): \(r.stderr)", line: line)
        XCTAssertTrue(
            r.stderr.hasPrefix("error: ") && r.stderr.contains(mentions),
            "\(args): '\(r.stderr)' should mention '\(mentions)'", line: line)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "one error line: \(r.stderr)", line: line)
    }

    func testBadValuesAreNamedAndExit64() {
        assertUsage(["cka", a, "--images", images, "--num", "-5"], mentions: "--num must be at least 1")
        assertUsage(["attention", a, "--images", images, "--batch", "-1"], mentions: "--batch")
        assertUsage(["extract", a, "--images", images, "--threads", "0"], mentions: "--threads")
        assertUsage(["extract", a, "--images", images, "--image-size", "-32"], mentions: "--image-size")
        assertUsage(
            ["extract", a, "--images", images, "--image-size", "36"],
            mentions: "--image-size 36 is not a multiple of the patch size 8")
        assertUsage(
            ["cka", a, b, "--images", images, "--heads-b", "5"],
            mentions: "--heads-b 5 does not divide the embedding width 24")
        assertUsage(
            ["attention", a, "--images", images, "--compare-heads", "2"],
            mentions: "--compare-heads goes with --compare M2")
        assertUsage(
            ["probe", a, "--train", tmp, "--split", "0.3", "--heads", "2", "--heads", "2"],
            mentions: "one per model (1)")
        assertUsage(["extract", a, b, "--images", images], mentions: "this command takes one checkpoint, got 2")
        assertUsage(["inspect", a, b], mentions: "this command takes one checkpoint, got 2")
        assertUsage(
            ["finetune", a, b, "--train", tmp, "--split", "0.5"], mentions: "this command takes one checkpoint, got 2")
    }

    /// `attention A B C` overlays B and C on A, each with the numbers of its own run.
    func testSeveralModelsOverlaid() throws {
        let c = Fixtures.checkpoint("tiny_f16.safetensors")
        XCTAssertEqual(
            run(["attention", a, b, c, "--images", images, "--resize", "none", "--out", tmp + "/three",
            "--quiet"]).status, 0)
        XCTAssertEqual(
            run(["attention", c, "--images", images, "--resize", "none", "--out", tmp + "/c", "--quiet"]).status, 0)
        XCTAssertEqual(try String(contentsOfFile: tmp + "/three/compare_3/attention.csv", encoding: .utf8),
                       try String(contentsOfFile: tmp + "/c/attention.csv", encoding: .utf8))
        let svg = try String(contentsOfFile: tmp + "/three/attention_entropy.svg", encoding: .utf8)
        for n in ["tiny_f32", "tiny2_f32", "tiny_f16"] { XCTAssertTrue(svg.contains(">\(n)<"), "legend names \(n)") }
        XCTAssertEqual(run(["plot", tmp + "/three", "--out", tmp + "/three-again", "--quiet"]).status, 0)
        XCTAssertEqual(
            FileManager.default.contents(atPath: tmp + "/three/attention_entropy.svg"),
            FileManager.default.contents(atPath: tmp + "/three-again/attention_entropy.svg"))
    }

    /// `attention A B` overlays B as `--compare B` does, with the same numbers.
    func testTwoModelsOverlayAsCompare() throws {
        XCTAssertEqual(
            run(["attention", a, b, "--images", images, "--resize", "none", "--out", tmp + "/two", "--quiet"]).status,
            0)
        XCTAssertEqual(
            run(["attention", a, "--compare", b, "--images", images, "--resize", "none", "--out", tmp + "/cmp",
            "--quiet"]).status, 0)
        for f in ["attention.csv", "compare/attention.csv"] {
            XCTAssertEqual(
                try String(contentsOfFile: tmp + "/two/" + f, encoding: .utf8),
                try String(contentsOfFile: tmp + "/cmp/" + f, encoding: .utf8), f)
        }
    }

    /// --heads against the checkpoint's own count: a warning with both numbers and their sources;
    /// the report records where each model's count came from.
    func testHeadsThatContradictTheCheckpointAreWarnedAbout() throws {
        let r = run(["cka", a, b, "--images", images, "--resize", "none", "--heads-a", "4", "--out", tmp + "/h"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(
            r.stderr.contains("warning: \(a): --heads-a 4 overrides 2 heads from safetensors metadata num_heads"),
            r.stderr)
        let json = try String(contentsOfFile: tmp + "/h/cka.json", encoding: .utf8)
        XCTAssertTrue(json.contains("\"heads_source\": \"--heads-a\""), "model A's source")
        XCTAssertTrue(json.contains("\"heads_source\": \"safetensors metadata num_heads\""), "model B's source")
        let agree = run(["cka", a, "--images", images, "--resize", "none", "--heads", "2", "--out", tmp + "/h2"])
        XCTAssertFalse(agree.stderr.contains("warning"), agree.stderr)
    }

    /// Another command's report is never written over or mixed with; the same command's is
    /// replaced whole; a second run with the default folder keeps the first.
    func testReportsAreNeverLostOrMixed() throws {
        let out = tmp + "/r"
        XCTAssertEqual(run(["cka", a, "--images", images, "--resize", "none", "--out", out, "--quiet"]).status, 0)
        let before = try String(contentsOfFile: out + "/cka.csv", encoding: .utf8)
        let mixed = run(["attention", a, "--images", images, "--resize", "none", "--out", out])
        XCTAssertEqual(mixed.status, 1, mixed.stderr)
        XCTAssertTrue(mixed.stderr.contains("holds a cka report"), mixed.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/attention.csv"))
        XCTAssertEqual(try String(contentsOfFile: out + "/cka.csv", encoding: .utf8), before)
        // The same command: replaced whole (a stray file of the old report does not survive).
        try "old".write(toFile: out + "/stray.txt", atomically: true, encoding: .utf8)
        let again = run(["cka", a, b, "--images", images, "--resize", "none", "--out", out])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stderr.contains("notice: replacing the cka report in \(out)"), again.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/stray.txt"))
        // Default folders: the second run goes to a numbered one.
        for _ in 0..<2 { XCTAssertEqual(run(["cka", a, "--images", images, "--resize", "none"]).status, 0) }
        XCTAssertTrue(FileManager.default.fileExists(atPath: tmp + "/reports/cka-tiny_f32/cka.csv"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: tmp + "/reports/cka-tiny_f32-2/cka.csv"))
    }

    /// inspect shows a file's metadata; numbers appear at their float32 value.
    func testInspectShowsMetadataAndPlainNumbers() throws {
        let demo = Fixtures.packageRoot + "/checkpoints/vit_tiny_ft_demo.safetensors"
        let r = run(["inspect", demo])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(
            r.stdout.contains(
            "metadata      classes = [\"astronaut\", \"cat\", \"cells\", \"coffee\", \"hubble\", \"rocket\"]"),
            r.stdout)
        XCTAssertTrue(r.stdout.contains("num_heads = 12"), r.stdout)
        let j = run(["inspect", demo, "--json"])
        XCTAssertTrue(j.stdout.contains("\"layer_norm_eps\": 1e-06"), j.stdout)
        XCTAssertTrue(j.stdout.contains("\"producer\": \"vitlens 0.1.0 finetune\""), j.stdout)
    }
}

extension DailyUseTests {
    /// Figures' ranges: from the data by default and said so; the geometric axes and given
    /// ranges on request, in the analysing commands and in plot alike.
    func testRangesFromTheDataOrAsAsked() throws {
        let att = tmp + "/att"
        XCTAssertEqual(run(["attention", a, "--images", images, "--resize", "none", "--out", att, "--quiet"]).status, 0)
        var page = try String(contentsOfFile: att + "/index.html", encoding: .utf8)
        XCTAssertTrue(page.contains("the y axis spans the data"), "auto by default")
        XCTAssertEqual(run(["plot", att, "--ylim", "geometry", "--quiet"]).status, 0)
        page = try String(contentsOfFile: att + "/index.html", encoding: .utf8)
        XCTAssertTrue(page.contains("the y axis spans the full possible range"), page)
        XCTAssertEqual(run(["plot", att, "--ylim", "0,7", "--quiet"]).status, 0)
        page = try String(contentsOfFile: att + "/index.html", encoding: .utf8)
        XCTAssertTrue(page.contains("y from 0 to 7: the y axis as given"), page)
        assertUsage(["plot", att, "--ylim", "5,1"], mentions: "--ylim")
        let cka = tmp + "/cka"
        XCTAssertEqual(run(["cka", a, b, "--images", images, "--resize", "none", "--out", cka, "--quiet"]).status, 0)
        page = try String(contentsOfFile: cka + "/index.html", encoding: .utf8)
        XCTAssertTrue(
            page.contains("(from the data; --vmin 0 --vmax 1 gives the fixed scale)"), "auto colours by default")
        XCTAssertEqual(run(["plot", cka, "--vmin", "0", "--vmax", "1", "--quiet"]).status, 0)
        page = try String(contentsOfFile: cka + "/index.html", encoding: .utf8)
        XCTAssertTrue(page.contains("magma on [0, 1]."), "given range")
        assertUsage(
            ["cka", a, "--images", images, "--vmin", "-0.5", "--vmax", "-1"],
            mentions: "--vmax must be greater than --vmin")
    }
}

extension DailyUseTests {
    /// Intervals: cka.csv's bootstrap columns (off with --bootstrap 0), the probe's Wilson columns.
    func testIntervalsInTheReports() throws {
        XCTAssertEqual(
            run(["cka", a, "--images", images, "--resize", "none", "--batch", "4", "--bootstrap", "0", "--out", tmp
            + "/nb", "--quiet"]).status, 0)
        XCTAssertEqual(
            try String(contentsOfFile: tmp + "/nb/cka.csv", encoding: .utf8).split(separator: "\n").first,
            "layer_a,layer_b,cka")
        XCTAssertEqual(
            run(["cka", a, b, "--images", images, "--resize", "none", "--batch", "4", "--out", tmp + "/wb",
            "--quiet"]).status, 0)
        let page = try String(contentsOfFile: tmp + "/wb/index.html", encoding: .utf8)
        XCTAssertTrue(page.contains("95% percentile-bootstrap intervals over the"), "the page states the uncertainty")
        assertUsage(["cka", a, "--images", images, "--bootstrap", "-1"], mentions: "--bootstrap")
    }
}

extension DailyUseTests {
    /// --names: display names in titles, legends, tables, CSV, JSON and default folders.
    func testNamesEverywhere() throws {
        let long = "mae_tiny_400e_pretrained_on_imagenet1k_seed0_final_checkpoin", other = "DeiT-Tiny (supervised)"
        let r = run(
            ["probe", a, b, "--names", "\(long),\(other)", "--train", Fixtures.path("images"), "--split", "0.5",
            "--quiet"])
        // images/ has class folders cka, eval, none: a fine 3-class probe set for names.
        XCTAssertEqual(r.status, 0, r.stderr)
        let dir = tmp + "/reports/probe-\(long)-\(other)"
        let csv = try String(contentsOfFile: dir + "/probe.csv", encoding: .utf8)
        XCTAssertTrue(csv.contains("\n\(long),1,"), csv)
        XCTAssertTrue(csv.contains("\n\(other),1,") || csv.contains("\n\"\(other)\",1,"), csv)
        let page = try String(contentsOfFile: dir + "/index.html", encoding: .utf8)
        XCTAssertTrue(page.contains("\(long) test"), "the table names the model")
        let json = try String(contentsOfFile: dir + "/probe.json", encoding: .utf8)
        XCTAssertTrue(json.contains("\"name\": \"\(other)\""), "JSON records the display name beside the path")
        XCTAssertEqual(
            run(["cka", a, b, "--names", "A,B", "--images", images, "--resize", "none", "--quiet"]).status, 0)
        let svg = try String(contentsOfFile: tmp + "/reports/cka-A-B/cka.svg", encoding: .utf8)
        XCTAssertTrue(svg.contains(">CKA: A vs B<"), "title")
        assertUsage(
            ["cka", a, b, "--names", "A", "--images", images], mentions: "--names: give one name per model (2), got 1")
        assertUsage(["cka", a, b, "--names", "A,A", "--images", images], mentions: "--names")
        assertUsage(
            ["attention", a, "--names", "x,y", "--images", images],
            mentions: "--names: give one name per model (1), got 2")
    }
}

extension DailyUseTests {
    /// cka of three models: every pair a < b on the same batches, each pair's numbers (and
    /// intervals) those of its two-model run; one CSV with model columns, the grid figure, plot
    /// redraws it byte for byte.
    func testManyModelsAtOnce() throws {
        let c = Fixtures.checkpoint("tiny_f16.safetensors")
        XCTAssertEqual(
            run(["cka", a, b, c, "--images", images, "--resize", "none", "--batch", "4", "--out", tmp + "/three",
            "--quiet"]).status, 0)
        let rows = try String(contentsOfFile: tmp + "/three/cka.csv", encoding: .utf8).split(separator: "\n").map(
            String.init)
        XCTAssertEqual(rows.first, "model_a,model_b,layer_a,layer_b,cka,ci_low,ci_high")
        XCTAssertEqual(Set(rows.dropFirst().map { $0.split(separator: ",").prefix(2).joined(separator: ",") }),
                       ["tiny_f32,tiny2_f32", "tiny_f32,tiny_f16", "tiny2_f32,tiny_f16"])
        for (x, y, name) in [(a, c, "tiny_f32,tiny_f16"), (b, c, "tiny2_f32,tiny_f16")] {
            let out = tmp + "/pair-" + name
            XCTAssertEqual(
                run(["cka", x, y, "--images", images, "--resize", "none", "--batch", "4", "--out", out,
                "--quiet"]).status, 0)
            let pair = try String(contentsOfFile: out + "/cka.csv", encoding: .utf8).split(
                separator: "\n").dropFirst().map(String.init)
            XCTAssertEqual(
                rows.filter { $0.hasPrefix(name + ",") }.map { String($0.dropFirst(name.count + 1)) }, pair, name)
        }
        for f in ["cka_grid.png", "cka_grid.svg", "index.html", "cka.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: tmp + "/three/" + f), f) }
        XCTAssertEqual(run(["plot", tmp + "/three", "--out", tmp + "/three-again", "--quiet"]).status, 0)
        for f in ["cka_grid.svg", "cka_grid.png", "index.html"] {
            XCTAssertEqual(
                FileManager.default.contents(atPath: tmp + "/three/" + f),
                FileManager.default.contents(atPath: tmp + "/three-again/" + f), f)
        }
        assertUsage(["cka", a, b, c, "--images", images, "--shard", "0/2"], mentions: "--shard takes one or two models")
        assertUsage(
            ["cka", a, b, c, "--images", images, "--heads-a", "2"], mentions: "--heads-a/--heads-b go with two models")
    }
}
