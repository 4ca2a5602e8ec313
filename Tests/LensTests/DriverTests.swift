import Foundation
import Images
@testable import Lens
import TestSupport
import VitLensCore
import XCTest

/// The one batch loop every analysis runs through: which batches it feeds, in what order, what
/// it drops, how it reports progress and how it stops.
final class DriverTests: XCTestCase {
    /// Records what the driver says.
    final class Recorder: RunObserver {
        var progress: [(String, Int, Int)] = [], notices: [String] = [], ended = 0
        func notice(_ text: String) { notices.append(text) }
        func warning(_ text: String) {}
        func progress(_ label: String, done: Int, total: Int) { progress.append((label, done, total)) }
        func progressEnded() { ended += 1 }
    }

    /// An array source that remembers every step it was fed.
    func recordingSource() -> (ArraySource, () -> [BatchStep]) {
        var steps: [BatchStep] = []
        return (ArraySource { steps.append($0) }, { steps })
    }

    /// 23 rows in batches of 5, shard 1/3: batches 1 and 4 only, in order, with their rows.
    func testShardOwnsEveryNthBatch() throws {
        let (source, fed) = recordingSource()
        let observer = Recorder()
        let driver = BatchDriver(images: nil, count: 23, batch: 5, shard: ShardSpec(index: 1, count: 3), label: "t")
        var handed: [Int] = []
        try driver.run([source], RunContext(commandLine: "", observer: observer)) { handed.append($0.index) }
        XCTAssertEqual(driver.batchCount, 5)
        XCTAssertEqual(fed().map(\.index), [1, 4])
        XCTAssertEqual(fed().map(\.start), [5, 20])
        XCTAssertEqual(fed().map(\.count), [5, 3])
        XCTAssertEqual(fed()[1].kept, [20, 21, 22])
        XCTAssertTrue(fed().allSatisfy { $0.images == nil })
        XCTAssertEqual(handed, [1, 4], "the hand-off follows the sources, batch by batch")
        XCTAssertEqual(observer.progress.map(\.1), [5, 8])
        XCTAssertEqual(observer.progress.map(\.2), [8, 8], "the total counts this shard's images")
        XCTAssertEqual(observer.progress.map(\.0), ["t", "t"])
        XCTAssertEqual(observer.ended, 1)
    }

    /// Every shard of a split together feeds each batch exactly once.
    func testShardsPartitionTheBatches() throws {
        var all: [Int] = []
        for i in 0..<4 {
            let (source, fed) = recordingSource()
            let driver = BatchDriver(images: nil, count: 50, batch: 3, shard: ShardSpec(index: i, count: 4), label: "t")
            try driver.run([source], RunContext(commandLine: "", observer: CollectingObserver()))
            all += fed().map(\.index)
        }
        XCTAssertEqual(all.sorted(), Array(0..<17))
    }

    /// A batch below the minimum (CKA's 4) is not fed; it goes to `dropped` and still counts as done.
    func testSmallBatchIsDropped() throws {
        let (source, fed) = recordingSource()
        let observer = Recorder()
        var driver = BatchDriver(images: nil, count: 13, batch: 4, label: "t")
        driver.minimumBatch = 4
        var dropped: [BatchStep] = []
        driver.onDropped = { dropped.append($0) }
        try driver.run([source], RunContext(commandLine: "", observer: observer))
        XCTAssertEqual(fed().map(\.index), [0, 1, 2])
        XCTAssertEqual(dropped.map(\.index), [3])
        XCTAssertEqual(dropped.map(\.count), [1])
        XCTAssertEqual(observer.progress.last?.1, 13)
    }

    /// A cancelled run stops before its next batch with `LensError.cancelled`.
    func testCancellationStopsBetweenBatches() throws {
        let (source, fed) = recordingSource()
        let cancel = Cancellation()
        let driver = BatchDriver(images: nil, count: 20, batch: 4, label: "t")
        let context = RunContext(commandLine: "", observer: CollectingObserver(), cancellation: cancel)
        XCTAssertThrowsError(try driver.run([source], context) { step in if step.index == 1 { cancel.cancel() } }) {
            XCTAssertEqual($0 as? LensError, .cancelled)
        }
        XCTAssertEqual(fed().map(\.index), [0, 1])
    }

    /// A source's error ends the run at that batch; later sources and the hand-off do not see it.
    func testSourceErrorStopsTheRun() throws {
        struct Broken: Error {}
        let (after, fed) = recordingSource()
        let failing = ArraySource { if $0.index == 2 { throw Broken() } }
        let driver = BatchDriver(images: nil, count: 20, batch: 4, label: "t")
        var handed: [Int] = []
        let context = RunContext(commandLine: "", observer: CollectingObserver())
        XCTAssertThrowsError(try driver.run([failing, after], context) {
            handed.append($0.index)
        }) { XCTAssertTrue($0 is Broken) }
        XCTAssertEqual(fed().map(\.index), [0, 1])
        XCTAssertEqual(handed, [0, 1])
    }

    /// Models run on the decoded images: every source sees the same tensor, the hand-off the kept rows.
    func testModelsSeeTheDecodedBatch() throws {
        let images = try ImageBatches(folder: Fixtures.path("images/cka"), num: 10, size: 32, mode: .none, batch: 4,
                                      skipBad: false)
        let model = try AnalysisModel(ModelRequest(path: Fixtures.checkpoint("tiny_f32.safetensors")))
        let taps = GramTaps(config: model.config, selection: .mean, representation: .residual)
        XCTAssertEqual(taps.representationKind, .residual, "what is tapped belongs to the taps")
        let (array, fed) = recordingSource()
        let driver = BatchDriver(images: images, count: 10, batch: 4, label: "t")
        var kept: [Int] = []
        let context = RunContext(commandLine: "", observer: CollectingObserver())
        try driver.run([ModelSource(model, taps: taps), array], context) {
            XCTAssertEqual(taps.grams.count, model.config.depth + 1)
            XCTAssertEqual($0.images?.shape, [$0.count, 3, 32, 32])
            kept += $0.kept
        }
        XCTAssertEqual(kept, Array(0..<10))
        XCTAssertEqual(fed().map(\.count), [4, 4, 2])
    }

    /// A CKA run cancelled before it starts writes no report and says so.
    func testCancelledCKARun() throws {
        let images = try ImageBatches(folder: Fixtures.path("images/cka"), num: 8, size: 32, mode: .none, batch: 4,
                                      skipBad: false)
        let model = try AnalysisModel(ModelRequest(path: Fixtures.checkpoint("tiny_f32.safetensors")))
        let run = try CKARun(a: model, b: nil, images: images, folder: Fixtures.path("images/cka"), tokens: .patches,
                             rep: .normed, shard: nil)
        let cancel = Cancellation()
        cancel.cancel()
        let context = RunContext(commandLine: "", observer: CollectingObserver(), cancellation: cancel)
        XCTAssertThrowsError(try run.run(context)) {
            XCTAssertEqual("\($0)", "interrupted; nothing was written")
        }
    }
}
