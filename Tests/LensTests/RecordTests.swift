import Foundation
import Images
@testable import Lens
import TestSupport
import VitLensCore
import XCTest

/// Typed records: each report's setup is a Swift value, written as JSON and read back to the same
/// value; what a damaged record lacks is named.
final class RecordTests: XCTestCase {
    let folder = Fixtures.path("images/cka")

    func images(_ batch: Int = 4) throws -> ImageBatches {
        try ImageBatches(folder: folder, num: 12, size: 32, mode: .none, batch: batch, skipBad: false)
    }
    func model(_ file: String) throws -> AnalysisModel {
        try AnalysisModel(ModelRequest(path: Fixtures.checkpoint(file), heads: 2))
    }

    func testCKASetupRoundTrips() throws {
        let run = try CKARun(a: model("tiny_f32.safetensors"), b: model("tiny2_f32.safetensors"), images: images(),
                             folder: folder, tokens: .mean, rep: .residual, shard: nil, bootstrap: 7)
        let setup = run.setup
        XCTAssertEqual(try CKASetup(json: setup.json), setup)
        XCTAssertEqual(try CKASetup(json: setup.json).json.render(), setup.json.render())
        XCTAssertEqual(setup.definitions.interval.resamples, 7)
        XCTAssertEqual(setup.definitions.rep, "residual")
        XCTAssertEqual(setup.nameB, "tiny2_f32")
        XCTAssertEqual(setup.images.count, 12)
        let selfRun = try CKARun(a: model("tiny_f32.safetensors"), b: nil, images: images(), folder: folder,
                                 tokens: .patches, rep: .normed, shard: nil)
        XCTAssertTrue(try CKASetup(json: selfRun.setup.json).selfComparison)
        XCTAssertEqual(try CKASetup(json: selfRun.setup.json), selfRun.setup)
    }

    func testAttentionSetupRoundTrips() throws {
        let run = try AttentionRun(model: model("tiny_f32.safetensors"), images: images(), folder: folder,
                                   convention: .maeLite, perImage: true, shard: nil)
        let setup = run.setup(run.sides[0])
        XCTAssertEqual(try AttentionSetup(json: setup.json), setup)
        XCTAssertEqual(setup.definitions.distanceScale, 14)
        XCTAssertTrue(setup.perImage)
        XCTAssertEqual(setup.model.architecture?.heads, 2)
    }

    /// Arrays and "same as model_a" on either side; a rows record instead of an image list.
    func testSideAndImageRecords() throws {
        let array = ArrayRecord(kind: .attention, name: "x", path: "x.npy", sha256: "ab", dtype: "float16",
                                shape: [2, 5, 3, 5, 5], prefixTokens: 1, patchSize: nil)
        XCTAssertEqual(try SideRecord(json: SideRecord.array(array).json), .array(array))
        XCTAssertEqual(try SideRecord(json: "same as model_a"), .sameAsA)
        let rows = ImagesRecord.rows(count: 5, from: "the attention arrays' rows")
        XCTAssertEqual(try ImagesRecord(json: rows.json), rows)
        let many = ImagesRecord(paths: (0..<5000).map { "\($0).png" }, folder: "f")
        guard case let .listed(_, n, _, paths) = many else { return XCTFail("\(many)") }
        XCTAssertEqual(n, 5000)
        XCTAssertNil(paths, "more than 4,096 images: only the hash")
        XCTAssertEqual(try ImagesRecord(json: many.json), many)
    }

    /// A setup that lacks a key or has one of another type is refused naming the key path.
    func testDamagedSetupNamesTheKey() throws {
        let run = try CKARun(a: model("tiny_f32.safetensors"), b: nil, images: images(), folder: folder,
                             tokens: .patches, rep: .normed, shard: nil)
        guard case let .object(fields) = run.setup.json else { return XCTFail() }
        let noLayers = JSONValue.object(fields.filter { $0.0 != "layers_b" })
        XCTAssertThrowsError(try CKASetup(json: noLayers)) { XCTAssertEqual("\($0)", "CKA setup: layers_b is missing") }
        let badBatch = JSONValue.object(fields.map { k, v in
            guard k == "definitions", case let .object(d) = v else { return (k, v) }
            return (k, .object(d.map { $0.0 == "batch" ? ($0.0, "four") : $0 }))
        })
        XCTAssertThrowsError(try CKASetup(json: badBatch)) {
            XCTAssertEqual("\($0)", "CKA setup: definitions.batch is not an integer")
        }
        XCTAssertThrowsError(try AttentionSetup(json: run.setup.json)) {
            XCTAssertEqual("\($0)", "attention setup: command is 'cka', not 'attention'")
        }
    }

    /// A report written before the family's source was recorded still reads (for `plot`).
    func testArchitectureBeforeFamilySource() throws {
        let run = try CKARun(a: model("tiny_f32.safetensors"), b: nil, images: images(), folder: folder,
                             tokens: .patches, rep: .normed, shard: nil)
        guard case let .model(m) = run.setup.modelA, case let .object(fields) = m.architecture.json else {
            return XCTFail("\(run.setup.modelA)")
        }
        XCTAssertEqual(m.architecture.familySource, "the tensors")
        let older = try ArchitectureRecord(json: .object(fields.filter { $0.0 != "family_source" }))
        XCTAssertEqual(older.familySource, "not recorded (an older report)")
        XCTAssertEqual(older.family, "ViT")
    }
}
