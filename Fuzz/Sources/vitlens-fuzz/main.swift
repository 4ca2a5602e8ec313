import Checkpoint
import Foundation
import Images

// One libFuzzer binary, five targets chosen by VITLENS_FUZZ_TARGET:
//   checkpoint  bytes → format detection → safetensors / torch zip + unpickler → tensors
//   pickle      bytes → the restricted unpickler alone
//   npy         bytes → the .npy reader (features and attention from elsewhere), the array read whole
//   png, jpeg   bytes → the image decoders (a magic number is prepended, so every input
//               reaches the decoder it is meant for)
// Every input must end in a value or a thrown error: a trap, an ASan report, a timeout or an
// out-of-memory is a finding.

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

nonisolated(unsafe) var target = ProcessInfo.processInfo.environment["VITLENS_FUZZ_TARGET"] ?? "checkpoint"

func one(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    switch target {
    case "pickle": FuzzEntryPoints.pickle(bytes)
    case "npy": FuzzEntryPoints.npy(bytes)
    case "png", "jpeg":
        let magic: [UInt8] = target == "png" ? [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] : [0xFF, 0xD8, 0xFF]
        let input = bytes.starts(with: magic) ? bytes : magic + bytes
        _ = input.withUnsafeBytes { try? DecodedImage.decode($0, path: "fuzz") }
    default: FuzzEntryPoints.checkpoint(bytes)
    }
    return 0
}

// SwiftPM links executables with `main` renamed to `<module>_main`; libFuzzer's driver is
// entered from there.
@_cdecl("vitlens_fuzz_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var c = argc, v = argv
    return LLVMFuzzerRunDriver(&c, &v) { one($0, $1) }
}
