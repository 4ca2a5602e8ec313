import Checkpoint
@testable import Engine
@testable import Families
import Foundation
import TestSupport
import XCTest

/// A model's family is given or evident, never guessed: tensors several families share stop the
/// run with the candidates named, and `--family` (or a metadata `family`) settles it.
final class FamilyResolutionTests: XCTestCase {
    func load(_ file: String) throws -> LoadedCheckpoint {
        try CheckpointLoader.loadModel(path: Fixtures.checkpoint(file))
    }

    func assertAmbiguous(_ c: LoadedCheckpoint, _ candidates: [ModelFamily], line: UInt = #line) {
        XCTAssertThrowsError(try ViTConfig.infer(from: c, heads: 2), line: line) { e in
            guard case let .ambiguous(_, got, _)? = e as? FamilyError else { return XCTFail("\(e)", line: line) }
            XCTAssertEqual(got, candidates, line: line)
            XCTAssertTrue("\(e)".contains("--family " + candidates.map(\.rawValue).joined(separator: "|")), "\(e)",
                          line: line)
        }
    }

    /// OpenAI CLIP's names fit Perception Encoder too: asked, then run as told.
    func testCLIPOrPerceptionEncoder() throws {
        let c = try load("family_clip.safetensors")
        assertAmbiguous(c, [.clip, .perceptionEncoder])
        let clip = try ViTConfig.infer(from: c, heads: 2, family: .clip)
        XCTAssertEqual(clip.activation, .quickGelu)
        XCTAssertEqual(clip.eps, 1e-5)
        XCTAssertEqual(clip.familySource, "--family")
        // Told PE: exact GELU and PE's rotary positions.
        let pe = try ViTConfig.infer(from: c, heads: 2, family: .perceptionEncoder)
        XCTAssertEqual(pe.activation, .gelu)
        XCTAssertEqual(pe.rotary, .perceptionEncoder(trainedGrid: 4))
        XCTAssertThrowsError(try ViTConfig.infer(from: c, heads: 2, family: .siglip)) { e in
            XCTAssertTrue("\(e)".contains("--family says siglip (SigLIP), but it has CLIP's ln_pre"), "\(e)")
        }
        // QuickGELU stated in the metadata: only CLIP uses it.
        let stated = try ViTConfig.infer(from: c.replacingTensors(c.tensors, metadata: ["hidden_act": "quick_gelu"]),
                                         heads: 2)
        XCTAssertEqual(stated.modelFamily, .clip)
        // An attention-pooling head beside CLIP's names: Perception Encoder core, evident.
        let core = c.replacingTensors(c.tensors, ignored: c.ignored + ["visual.attn_pool.probe"])
        XCTAssertEqual(try ViTConfig.infer(from: core, heads: 2).modelFamily, .perceptionEncoder)
        // A Hugging Face CLIP folder says what it is.
        XCTAssertEqual(try ViTConfig.infer(from: load("family_hf_clipvision")).modelFamily, .clip)
    }

    /// No class token: SigLIP by its MAP head or its config; timm's registers-without-class-token
    /// ViTs (exact GELU) by their registers; neither: asked.
    func testSigLIPOrViTWithoutClassToken() throws {
        let siglip = try load("family_siglip.safetensors")
        let evident = try ViTConfig.infer(from: siglip, heads: 2)
        XCTAssertEqual(evident.modelFamily, .siglip)
        XCTAssertEqual(evident.activation, .geluTanh)
        XCTAssertEqual(evident.familySource, "the tensors (an attention-pooling head)")
        XCTAssertEqual(try ViTConfig.infer(from: load("family_hf_siglipvision")).modelFamily, .siglip)

        let bare = siglip.replacingTensors(siglip.tensors, ignored: siglip.ignored.filter { !$0.contains("attn_pool") })
        assertAmbiguous(bare, [.siglip, .vitGap])
        let gap = try ViTConfig.infer(from: bare, heads: 2, family: .vitGap)
        XCTAssertEqual(gap.activation, .gelu)
        XCTAssertEqual(gap.family, "ViT, no class token")
        let told = try ViTConfig.infer(
            from: bare.replacingTensors(bare.tensors, metadata: ["family": "siglip"]), heads: 2)
        XCTAssertEqual(told.activation, .geluTanh)
        XCTAssertEqual(told.familySource, "safetensors metadata family")
        let tanh = bare.replacingTensors(bare.tensors, metadata: ["hidden_act": "gelu_pytorch_tanh"])
        XCTAssertEqual(try ViTConfig.infer(from: tanh, heads: 2).modelFamily, .siglip)
        XCTAssertThrowsError(try ViTConfig.infer(from: bare.replacingTensors(bare.tensors, metadata: ["family": "x"]),
                                                 heads: 2)) { e in
            XCTAssertTrue("\(e)".contains("metadata family 'x' is not one of vit, deit3"), "\(e)")
        }

        // timm's vit_*_reg4_gap_*: registers and no class token — not SigLIP, exact GELU.
        let reg = try load("family_dinov2reg.safetensors")
        var t = reg.tensors
        t["cls_token"] = nil
        let noCls = try ViTConfig.infer(from: reg.replacingTensors(t))
        XCTAssertEqual(noCls.modelFamily, .vitGap)
        XCTAssertEqual(noCls.activation, .gelu)
        XCTAssertEqual(noCls.family, "ViT with registers, no class token")
        XCTAssertEqual(noCls.prefixTokens, 4)
        XCTAssertThrowsError(try ViTConfig.infer(from: reg.replacingTensors(t), family: .siglip)) { e in
            XCTAssertTrue("\(e)".contains("it has registers, which SigLIP has not"), "\(e)")
        }
    }

    /// Families the tensors make evident need nothing; a contradicting `--family` is named.
    func testEvidentFamilies() throws {
        for (file, family) in [("tiny_f32.safetensors", ModelFamily.vit), ("family_deit3.safetensors", .deit3),
                               ("family_dinov2reg.safetensors", .dinov2), ("family_beit.safetensors", .beit)] {
            let c = try ViTConfig.infer(from: load(file), heads: 2)
            XCTAssertEqual(c.modelFamily, family, file)
            XCTAssertEqual(c.activation, .gelu, file)
        }
        XCTAssertThrowsError(try ViTConfig.infer(from: load("tiny_f32.safetensors"), heads: 2, family: .clip)) { e in
            XCTAssertTrue("\(e)".hasSuffix(
                "--family says clip (CLIP), but it has no ln_pre, which Perception Encoder and CLIP have"),
                          "\(e)")
        }
        XCTAssertThrowsError(try ViTConfig.infer(from: load("tiny_f32.safetensors"), heads: 2, family: .beit))
        XCTAssertEqual(try ViTConfig.infer(from: load("tiny_f32.safetensors"), heads: 2, family: .vit).familySource,
                       "--family")
    }
}
