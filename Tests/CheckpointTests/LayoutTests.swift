@testable import Checkpoint
import TestSupport
import VitLensCore
import XCTest

final class LayoutTests: XCTestCase {
    /// timm's names for the 2-block fixture: what every layout must map onto.
    let canonical: Set<String> = {
        var s: Set<String> = [
            "cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias"]
        for i in 0..<2 {
            for p in ["norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"] {
                s.insert("blocks.\(i).\(p).weight"); s.insert("blocks.\(i).\(p).bias")
            }
        }
        return s
    }()

    func check(_ file: String, layout: Layout, location: String, ignored: [String], line: UInt = #line) throws {
        let c = try CheckpointLoader.load(path: Fixtures.checkpoint(file))
        XCTAssertEqual(c.layout, layout, file, line: line)
        XCTAssertEqual(c.location, location, file, line: line)
        XCTAssertEqual(Set(c.tensors.keys), canonical, file, line: line)
        for i in ignored {
            XCTAssertTrue(c.ignored.contains(i), "\(file): \(i) should be ignored; ignored: \(c.ignored)", line: line) }
        // Every layout holds the same weights.
        let ref = try CheckpointLoader.load(path: Fixtures.checkpoint("tiny_f32.safetensors"))
        for k in canonical {
            XCTAssertEqual(
                try c.tensors[k]!.floats(name: k), try ref.tensors[k]!.floats(name: k), "\(file): \(k)", line: line)
        }
    }

    func testTimmSafetensorsAndPth() throws {
        try check("tiny_f32.safetensors", layout: .timm, location: "top level", ignored: ["head.weight", "head.bias"])
        try check("tiny_f16.safetensors", layout: .timm, location: "top level", ignored: ["head.weight"])
        try check("tiny_bf16.safetensors", layout: .timm, location: "top level", ignored: ["head.weight"])
        try check("tiny_timm.pth", layout: .timm, location: "top level", ignored: ["head.weight"])
    }

    func testMAE() throws {
        try check("tiny_mae.pth", layout: .mae, location: "model",
                  ignored: ["optimizer", "start_epoch", "model.decoder_embed.weight", "model.mask_token"])
    }

    func testMoCoV3IgnoresMomentumEncoderPredictorAndProjector() throws {
        try check("tiny_moco.pth.tar", layout: .mocoV3, location: "state_dict",
                  ignored: [
                      "module.base_encoder.head.0.weight", "module.momentum_encoder.cls_token",
                      "module.predictor.0.weight", "epoch"])
    }

    func testDINOUsesTheTeacher() throws {
        try check("tiny_dino.pth", layout: .dino, location: "teacher", ignored: ["student", "head.mlp.0.weight"])
    }

    func testHuggingFaceFolderFusesQKV() throws {
        try check("tiny_hf", layout: .huggingFace, location: "top level", ignored: ["classifier.weight"])
        let c = try CheckpointLoader.load(path: Fixtures.checkpoint("tiny_hf"))
        XCTAssertEqual(c.config?.heads, 2)
        XCTAssertEqual(c.config?.layerNormEps, 1e-6)
    }

    func testRefusals() {
        XCTAssertThrowsError(try CheckpointLoader.load(path: Fixtures.checkpoint("evil_os_system.pth"))) { e in
            XCTAssertTrue("\(e)".contains("'posix.system' is not allowed"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/tmp/vitlens-pwned"))
        XCTAssertThrowsError(try CheckpointLoader.load(path: Fixtures.checkpoint("tiny_timm_deflated.pth"))) { e in
            XCTAssertTrue("\(e)".contains("compressed"), "\(e)")
        }
        XCTAssertThrowsError(try CheckpointLoader.load(path: Fixtures.path("images/none/a_astronaut.png"))) { e in
            XCTAssertTrue("\(e)".contains("not a checkpoint vitlens can read"), "\(e)")
        }
        XCTAssertThrowsError(try CheckpointLoader.load(path: Fixtures.checkpoint("missing.pth"))) { e in
            XCTAssertTrue("\(e)".contains("missing.pth"), "\(e)")
        }
    }

    func testTruncatedArchivesAreRefused() throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixtures.checkpoint("tiny_timm.pth"))))
        for cut in [10, 100, bytes.count / 2, bytes.count - 30, bytes.count - 1] {
            let f = MappedFile(copying: Array(bytes[0..<cut]), name: "cut.pth")
            XCTAssertThrowsError(try TorchArchive.read(f) { _ in }, "cut at \(cut)")
        }
    }
}
