import Analysis
import Engine
import Foundation
import Images
import Lens
import TestSupport
import Train
import VitLensCore
import XCTest

/// The application layer reached directly: the image loader, runs, shards and merge, report
/// round trips, figures drawn from memory against figures drawn from the files.
final class LensTests: TemporaryFolderTestCase {
    let images = Fixtures.path("images/cka")
    let a = Fixtures.checkpoint("tiny_f32.safetensors"), b = Fixtures.checkpoint("tiny2_f32.safetensors")



    func context() -> RunContext { RunContext(commandLine: "vitlens test", observer: CollectingObserver()) }

    func loader(batch: Int, num: Int = 1024) throws -> ImageBatches {
        try ImageBatches(folder: images, num: num, size: 32, mode: .none, batch: batch, skipBad: false)
    }

    /// Batches partition the listing in order; the prefetching loop gives what loading by index
    /// gives; the training cache gives the same pixels as a fresh decode.
    func testImageBatches() throws {
        let all = try loader(batch: 5)
        let n = all.items.count
        XCTAssertEqual(all.batchCount, (n + 4) / 5)
        XCTAssertEqual((0..<all.batchCount).map(all.imageCount(ofBatch:)).reduce(0, +), n)
        var seen: [Int] = []
        try all.forEach { batch in
            let direct = try all.load(batch: batch.index)
            XCTAssertEqual(batch.kept, direct.kept)
            XCTAssertEqual(batch.images.array, direct.images.array, "batch \(batch.index)")
            seen += batch.kept
        }
        XCTAssertEqual(seen, Array(0..<n))
        let picked = [3, 0, 3, n - 1]
        let first = try all.images(at: picked), again = try all.images(at: picked)
        XCTAssertEqual(first.array, again.array)
        let plane = 3 * 32 * 32, b0 = try all.load(batch: 0)
        XCTAssertEqual(Array(first.array[plane..<(2 * plane)]), Array(b0.images.array[0..<plane]))
    }

    /// An unreadable image: an error naming it, or skipped and reported with skipping on.
    func testUnreadableImageSkippedOrRefused() throws {
        let dir = tmp + "/imgs"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for f in ["00_astronaut.png", "01_chelsea.png", "02_coffee.png"] {
            try FileManager.default.copyItem(atPath: images + "/" + f, toPath: dir + "/" + f) }
        try "junk".write(toFile: dir + "/01b_broken.png", atomically: true, encoding: .utf8)
        let strict = try ImageBatches(folder: dir, num: 10, size: 32, mode: .none, batch: 4, skipBad: false)
        XCTAssertThrowsError(try strict.load(batch: 0)) { XCTAssertTrue("\($0)".contains("01b_broken.png"), "\($0)") }
        let lenient = try ImageBatches(folder: dir, num: 10, size: 32, mode: .none, batch: 4, skipBad: true)
        var skipped: [String] = []
        lenient.onSkip = { skipped.append("\($0)") }
        let b = try lenient.load(batch: 0)
        XCTAssertEqual(b.kept, [0, 1, 3])  // 01b_broken.png sorts after 01_chelsea.png
        XCTAssertEqual(b.count, 3)
        XCTAssertEqual(skipped.count, 1)
        XCTAssertEqual(try lenient.readable(), [0, 1, 3])
    }

    func ckaRun(batch: Int, shard: ShardSpec? = nil) throws -> CKARun {
        try CKARun(
            a: AnalysisModel(ModelRequest(path: a)), b: AnalysisModel(ModelRequest(path: b)),
            images: try loader(batch: batch),
                   folder: images, tokens: .patches, rep: .normed, shard: shard)
    }

    /// Three shards merged give the single run's matrix and JSON, bit for bit.
    func testShardsMergeToTheSingleRun() throws {
        guard case let .report(single) = try ckaRun(batch: 4).run(context()) else { return XCTFail("no report") }
        let parts = try (0..<3).map { i -> Partial in
            guard case let .partial(p) = try ckaRun(batch: 4, shard: ShardSpec(index: i, count: 3)).run(
                context()) else { throw MergeError.noShards }
            return p
        }
        guard case let .cka(merged) = try MergedReport.merge(
            parts.reversed(), sources: ["s2", "s1", "s0"], commandLine: "vitlens test") else { return XCTFail() }
        XCTAssertEqual(merged.matrix.flatMap { $0 }.map(\.bitPattern), single.matrix.flatMap { $0 }.map(\.bitPattern))
        XCTAssertEqual(merged.json[path: "results", "cka"]?.render(), single.json[path: "results", "cka"]?.render())
        // Missing and repeated shards are refused by name.
        XCTAssertThrowsError(try MergedReport.merge(Array(parts.prefix(2)), sources: ["s0", "s1"], commandLine: "")) {
            XCTAssertTrue("\($0)".contains("missing shard(s) 2/3"), "\($0)")
        }
        XCTAssertThrowsError(
            try MergedReport.merge([parts[0], parts[0], parts[1]], sources: ["a", "b", "c"], commandLine: "")) {
            XCTAssertTrue("\($0)".contains("given twice"), "\($0)")
        }
    }

    /// Properties of the computed result: the self-CKA diagonal is 1; the JSON's full-precision
    /// matrix is the CSV's to 9 significant digits.
    func testCKAResultProperties() throws {
        let self1 = try CKARun(
            a: AnalysisModel(ModelRequest(path: a)), b: nil, images: try loader(batch: 8), folder: images,
                               tokens: .patches, rep: .normed, shard: nil)
        guard case let .report(r) = try self1.run(context()) else { return XCTFail() }
        for i in r.matrix.indices { XCTAssertEqual(r.matrix[i][i], 1, accuracy: 1e-6) }
        let full = r.json[path: "results", "cka"]!.arrayValue!.map { $0.arrayValue!.map { $0.doubleValue! } }
        for (x, y) in zip(full.joined(), r.matrix.joined()) { XCTAssertEqual(x, y, accuracy: 1e-8 * max(1, abs(x))) }
    }

    /// Writing a result and reading it back gives the same numbers and JSON; the figures drawn
    /// from the result in memory and from the folder are the same bytes.
    func testReportsRoundTrip() throws {
        guard case let .report(cka) = try ckaRun(batch: 4).run(context()) else { return XCTFail() }
        let attentionRun = try AttentionRun(
            model: try AnalysisModel(ModelRequest(path: a)), compare: try AnalysisModel(ModelRequest(path: b)),
                                        images: try loader(batch: 4), folder: images, convention: .pixels,
                                            perImage: true, shard: nil)
        guard case let .report(att) = try attentionRun.run(context()) else { return XCTFail() }
        let observer = CollectingObserver()
        func writeAndDraw(_ name: String, _ body: (OutputDirectory) throws -> [String]) throws -> String {
            let out = try OutputDirectory(tmp + "/" + name)
            _ = try body(out)
            try out.commit()
            return tmp + "/" + name
        }
        let ckaDir = try writeAndDraw("cka") {
            try cka.write(to: $0) + cka.draw(into: $0, style: FigureStyle(), observer) }
        let back = try CKAResult(reading: ckaDir)
        XCTAssertEqual(back.matrix.flatMap { $0 }.map(\.bitPattern), cka.matrix.flatMap { $0 }.map(\.bitPattern))
        XCTAssertEqual(back.json.render(), cka.json.render())
        let attDir = try writeAndDraw("att") {
            try att.write(to: $0) + att.draw(into: $0, style: FigureStyle(), observer) }
        let attBack = try AttentionResult(reading: attDir)
        XCTAssertEqual(attBack.distance, att.distance)
        XCTAssertEqual(attBack.entropy, att.entropy)
        XCTAssertEqual(attBack.boxes["distance"], att.boxes["distance"])
        XCTAssertEqual(attBack.compare?.entropy, att.compare?.entropy)
        XCTAssertEqual(attBack.json.render(), att.json.render())
        // Redrawn from the files: identical bytes.
        for (dir, files) in [
            (ckaDir, ["cka.svg", "cka.png", "index.html"]),
            (attDir, ["attention_distance.svg", "attention_entropy.png", "index.html"])] {
            let again = try writeAndDraw((dir as NSString).lastPathComponent + "-again") {
                try AnyReport(reading: dir).draw(into: $0, style: FigureStyle(), observer) }
            for f in files {
                XCTAssertEqual(
                    FileManager.default.contents(atPath: dir + "/" + f),
                    FileManager.default.contents(atPath: again + "/" + f), f)
            }
        }
    }

    /// A probe result's CSV and JSON read back to the same rows; several models get a model column.
    func testProbeResultRoundTrip() throws {
        let rows = [
            ProbeResult.Row(layersKept: 1, train: 0.5, test: 0.25),
            ProbeResult.Row(layersKept: 2, train: 1, test: 0.75)]
        let r = ProbeResult(
            models: [("m1", rows), ("m2", rows.reversed())], json: .object([("results", .array([]))]),
            modelColumn: true)
        let out = try OutputDirectory(tmp + "/probe")
        _ = try r.write(to: out)
        try out.commit()
        let back = try ProbeResult(reading: tmp + "/probe")
        XCTAssertEqual(back.models.map(\.name), ["m1", "m2"])
        XCTAssertEqual(back.models[1].rows.map(\.layersKept), [1, 2], "rows sorted by depth")
        XCTAssertEqual(back.models[0].rows.map(\.test), [0.25, 0.75])
        XCTAssertEqual(
            try String(contentsOfFile: tmp + "/probe/probe.csv", encoding: .utf8).split(separator: "\n").first,
            "model,layers_kept,train_accuracy,test_accuracy,test_accuracy_ci_low,test_accuracy_ci_high")
    }

    /// Models that cannot be compared are refused with both files named.
    func testIncompatibleModels() throws {
        let p4 = try AnalysisModel(ModelRequest(path: Fixtures.checkpoint("tiny_p4_f32.safetensors")))
        XCTAssertThrowsError(
            try CKARun(a: AnalysisModel(ModelRequest(path: a)), b: p4, images: try loader(batch: 4), folder: images,
                                        tokens: .patches, rep: .normed, shard: nil)) { e in
            guard case LensError.differentGrids = e else { return XCTFail("\(e)") }
            XCTAssertTrue("\(e)".contains("tiny_p4_f32.safetensors"), "\(e)")
        }
    }
}

/// Figure ranges that show the data, and the fixed ones on request.
final class FigureRangeTests: XCTestCase {
    func testTidyRangeHoldsTheDataTightly() {
        for data in [[113.2, 121.4], [4.9, 5.3], [0.0, 0.2], [-0.3, 0.4], [7.0, 7.0], [1e-4, 3e-4]] {
            let (lo, hi) = tidyRange(data)
            XCTAssertLessThanOrEqual(lo, data.min()!, "\(data)")
            XCTAssertGreaterThanOrEqual(hi, data.max()!, "\(data)")
            if data.min()! >= 0 { XCTAssertGreaterThanOrEqual(lo, 0, "\(data)") }
            let span = max(data.max()! - data.min()!, abs(data.max()!) * 0.1, 2e-3)
            XCTAssertLessThanOrEqual(hi - lo, 3 * span, "\(data): (\(lo), \(hi)) is not tight")
        }
        XCTAssertEqual(tidyRange([113.2, 121.4]).0, 112, accuracy: 1e-9)
        XCTAssertEqual(tidyRange([113.2, 121.4]).1, 122, accuracy: 1e-9)
    }

    func testHeatmapColourRange() throws {
        let side = SideRecord.array(ArrayRecord(kind: .features, name: "f", path: "f.npy", sha256: "", dtype: "float32",
                                                shape: [1, 8, 4], prefixTokens: 0))
        let setup = CKASetup(modelA: side, modelB: side, images: .rows(count: 8, from: "rows"),
                             definitions: .init(tokens: "mean", rep: "normed", batch: 8, resize: "none", imageSize: nil,
                                                skipBadImages: false, interval: .init(resamples: 0)),
                             layersA: 1, layersB: 2, totalBatches: 1)
        var r = try CKAResult(
            setup: setup, batches: [CKABatch(index: 0, size: 8, kl: [0.81, 0.97], kk: [1], ll: [1, 1])],
                              dropped: [], run: RunRecord(commandLine: ""))
        XCTAssertEqual(r.matrix[0], [0.81, 0.97])
        let auto = r.colorRange(FigureStyle())
        XCTAssertEqual(auto.0, 0.8, accuracy: 1e-12)
        XCTAssertEqual(auto.1, 1.0, accuracy: 1e-12)
        XCTAssertTrue(r.colorRange(FigureStyle(vmin: 0, vmax: 1)) == (0, 1))
        r.matrix = [[0.5, 0.5]]
        let flat = r.colorRange(FigureStyle())
        XCTAssertLessThan(flat.0, 0.5)
        XCTAssertGreaterThan(flat.1, 0.5)
    }
}
