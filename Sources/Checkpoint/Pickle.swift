import VitLensCore

/// Values a restricted unpickle can produce. Lists and dicts are reference boxes because
/// pickle mutates them after they are memoised (APPEND, SETITEMS on a memo'd object).
public indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    /// An allowlisted global that has not been called (a storage type, a dtype, a callable).
    case global(String)
    /// A storage reference from BINPERSID: (dtype, key of the zip entry, element count).
    case storage(dtype: DType, key: String, count: Int)
    case tensor(RawTensor)
    /// A numpy dtype object (only used as the first argument of numpy's scalar()).
    case numpyDType(String)
    case mark
}

public final class PickleList { public var items: [PickleValue] = [] }

/// Every list and dict one unpickle created. Pickle's memo lets a file put a list inside itself;
/// such cycles would never be freed by reference counting, so the reader empties every container
/// when it is done (`clear()`): that breaks all cycles, and since the arena still holds each
/// container while they are emptied, nothing is released recursively either.
public final class PickleArena {
    var lists: [PickleList] = []
    var dicts: [PickleDict] = []
    func list() -> PickleList { let l = PickleList(); lists.append(l); return l }
    func dict() -> PickleDict { let d = PickleDict(); dicts.append(d); return d }
    public func clear() {
        for l in lists { l.items.removeAll() }
        for d in dicts { d.items.removeAll() }
        lists.removeAll()
        dicts.removeAll()
    }
}

public final class PickleDict {
    public var items: [(key: PickleValue, value: PickleValue)] = []
    public func lookup(_ key: String) -> PickleValue? {
        for (k, v) in items { if case let .string(s) = k, s == key { return v } }
        return nil
    }
}

/// A pickle virtual machine that only builds data. Globals outside the allowlist are refused
/// the moment they are named; REDUCE only calls the few allowlisted constructors below, each
/// implemented here in Swift. Nothing from a file is ever executed.
struct Unpickler {
    /// The globals a PyTorch state dict needs (docs/reference.md, "Checkpoints").
    static let allowed: Set<String> = [
        "collections.OrderedDict",
        "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
        "torch.FloatStorage", "torch.HalfStorage", "torch.BFloat16Storage", "torch.DoubleStorage",
        "torch.LongStorage", "torch.IntStorage", "torch.ShortStorage", "torch.CharStorage",
        "torch.ByteStorage", "torch.BoolStorage",
        "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.dtype",
        "_codecs.encode",
    ]
    static let storageTypes: [String: DType] = [
        "torch.FloatStorage": .f32, "torch.HalfStorage": .f16, "torch.BFloat16Storage": .bf16,
        "torch.DoubleStorage": .f64, "torch.LongStorage": .i64, "torch.IntStorage": .i32,
        "torch.ShortStorage": .i16, "torch.CharStorage": .i8, "torch.ByteStorage": .u8,
        "torch.BoolStorage": .bool,
    ]
    static let maxStack = 1 << 20
    static let maxMemo = 1 << 22

    let path: String
    let bytes: UnsafeRawBufferPointer
    /// Builds a tensor from a storage reference; supplied by the archive reader.
    let makeTensor: (_ storage: PickleValue, _ offset: Int, _ size: [Int], _ stride: [Int]) throws -> RawTensor

    private var pos = 0
    private var stack: [PickleValue] = []
    /// The containers created; the caller clears them when done with the result.
    let arena = PickleArena()
    private var marks: [Int] = []
    private var memo: [Int: PickleValue] = [:]

    init(path: String, bytes: UnsafeRawBufferPointer,
         makeTensor: @escaping (PickleValue, Int, [Int], [Int]) throws -> RawTensor) {
        self.path = path
        self.bytes = bytes
        self.makeTensor = makeTensor
    }

    private func fail(_ what: String) -> CheckpointError { .pickleRefused(path: path, what: what) }

    private mutating func take(_ n: Int) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= bytes.count - pos else {
            throw CheckpointError.truncated(path: path, what: "pickle data ends inside an opcode at byte \(pos)")
        }
        defer { pos += n }
        return UnsafeRawBufferPointer(rebasing: bytes[pos..<(pos + n)])
    }

    private mutating func u8() throws -> Int { Int(try take(1)[0]) }
    private mutating func le(_ n: Int) throws -> UInt64 {
        let b = try take(n)
        var v: UInt64 = 0
        for i in stride(from: n - 1, through: 0, by: -1) { v = v << 8 | UInt64(b[i]) }
        return v
    }
    private mutating func length(_ n: Int) throws -> Int {
        let v = try le(n)
        guard v <= UInt64(bytes.count - pos) else {
            throw CheckpointError.truncated(path: path, what: "pickle length \(v) at byte \(pos) runs past the data")
        }
        return Int(v)
    }
    private mutating func line() throws -> String {
        var end = pos
        while end < bytes.count && bytes[end] != 0x0A { end += 1 }
        guard end < bytes.count else {
            throw CheckpointError.truncated(path: path, what: "pickle text line at byte \(pos)") }
        let s = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[pos..<end]), as: UTF8.self)
        pos = end + 1
        return s
    }

    private mutating func push(_ v: PickleValue) throws {
        guard stack.count < Unpickler.maxStack else { throw fail("stack deeper than \(Unpickler.maxStack)") }
        switch v {
        case .tuple, .list, .dict:
            // Nesting depth is bounded by the number of containers, and releasing a deeply nested
            // value recurses once per level: capping containers bounds that recursion (the zip
            // branch of the loader runs on a thread with a stack large enough for the cap).
            containers += 1
            guard containers <= Unpickler.maxContainers else {
                throw fail(
                    "more than \(Unpickler.maxContainers) tuples, lists and dicts (a state dict has a few thousand)")
            }
        default: break
        }
        stack.append(v)
    }
    private var containers = 0
    static let maxContainers = 1_000_000
    private mutating func pop() throws -> PickleValue {
        guard let v = stack.popLast() else { throw fail("stack underflow at byte \(pos)") }
        if case .mark = v { throw fail("unexpected MARK at byte \(pos)") }
        return v
    }
    private mutating func popMark() throws -> [PickleValue] {
        // `m` is the index of the MARK itself; the items follow it.
        guard let m = marks.popLast(), m < stack.count, case .mark = stack[m] else {
            throw fail("no MARK for opcode at byte \(pos)")
        }
        let items = Array(stack[(m + 1)...])
        stack.removeSubrange(m...)
        return items
    }
    private mutating func top() throws -> PickleValue {
        guard let v = stack.last else { throw fail("stack underflow at byte \(pos)") }
        return v
    }
    private mutating func put(_ i: Int) throws {
        guard i >= 0, memo.count < Unpickler.maxMemo else { throw fail("memo index \(i) out of range") }
        memo[i] = try top()
    }
    private func get(_ i: Int) throws -> PickleValue {
        guard let v = memo[i] else { throw fail("memo index \(i) was never stored") }
        return v
    }

    private mutating func global(_ module: String, _ name: String) throws -> PickleValue {
        let full = module + "." + name
        guard Unpickler.allowed.contains(full) else {
            throw CheckpointError.pickleGlobalRefused(path: path, name: full) }
        return .global(full)
    }

    mutating func run() throws -> PickleValue {
        while true {
            let opPos = pos
            let op = try u8()
            switch op {
            case 0x80: _ = try u8()                                   // PROTO
            case 0x95: _ = try le(8)                                  // FRAME (framing is advisory)
            case 0x2E:                                                // STOP
                let v = try pop()
                return v
            case 0x28: marks.append(stack.count); try push(.mark)     // MARK
            case 0x30: _ = try pop()                                  // POP
            case 0x31: _ = try popMark()                              // POP_MARK
            case 0x32: try push(try top())                            // DUP
            case 0x4E: try push(.none)                                // NONE
            case 0x88: try push(.bool(true))                          // NEWTRUE
            case 0x89: try push(.bool(false))                         // NEWFALSE
            case 0x4A: try push(.int(Int(Int32(truncatingIfNeeded: try le(4)))))   // BININT
            case 0x4B: try push(.int(try u8()))                        // BININT1
            case 0x4D: try push(.int(Int(try le(2))))                  // BININT2
            case 0x8A, 0x8B:                                           // LONG1, LONG4
                let n = try length(op == 0x8A ? 1 : 4)
                guard n <= 8 else { throw fail("integer of \(n) bytes is too large") }
                let b = try take(n)
                var v: UInt64 = 0
                for i in stride(from: n - 1, through: 0, by: -1) { v = v << 8 | UInt64(b[i]) }
                if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 { v |= ~UInt64(0) << UInt64(8 * n) }
                try push(.int(Int(bitPattern: UInt(v))))
            case 0x49:                                                 // INT (text)
                let s = try line()
                if s == "01" { try push(.bool(true)) } else if s == "00" { try push(.bool(false)) }
                else { guard let v = Int(s) else { throw fail("bad INT \(s)") }; try push(.int(v)) }
            case 0x47:                                                 // BINFLOAT (big-endian)
                let b = try take(8)
                var v: UInt64 = 0
                for i in 0..<8 { v = v << 8 | UInt64(b[i]) }
                try push(.float(Double(bitPattern: v)))
            case 0x8C, 0x58, 0x8D:                                     // SHORT_BINUNICODE, BINUNICODE, BINUNICODE8
                let n = try length(op == 0x8C ? 1 : op == 0x58 ? 4 : 8)
                try push(.string(String(decoding: try take(n), as: UTF8.self)))
            case 0x55, 0x54:                                           // SHORT_BINSTRING, BINSTRING
                let n = try length(op == 0x55 ? 1 : 4)
                try push(.string(String(decoding: try take(n), as: UTF8.self)))
            case 0x43, 0x42, 0x8E:                                     // SHORT_BINBYTES, BINBYTES, BINBYTES8
                let n = try length(op == 0x43 ? 1 : op == 0x42 ? 4 : 8)
                try push(.bytes(Array(try take(n))))
            case 0x29: try push(.tuple([]))                            // EMPTY_TUPLE
            case 0x74: try push(.tuple(try popMark()))                 // TUPLE
            case 0x85: let a = try pop(); try push(.tuple([a]))        // TUPLE1
            case 0x86: let b = try pop(), a = try pop(); try push(.tuple([a, b]))        // TUPLE2
            case 0x87: let c = try pop(), b = try pop(), a = try pop(); try push(.tuple([a, b, c]))  // TUPLE3
            case 0x5D, 0x8F: try push(.list(arena.list()))             // EMPTY_LIST, EMPTY_SET
            case 0x6C, 0x91:                                           // LIST, FROZENSET
                let l = arena.list(); l.items = try popMark(); try push(.list(l))
            case 0x61:                                                 // APPEND
                let v = try pop()
                guard case let .list(l) = try top() else { throw fail("APPEND to a non-list at byte \(opPos)") }
                l.items.append(v)
            case 0x65, 0x90:                                           // APPENDS, ADDITEMS
                let items = try popMark()
                guard case let .list(l) = try top() else { throw fail("APPENDS to a non-list at byte \(opPos)") }
                l.items.append(contentsOf: items)
            case 0x7D: try push(.dict(arena.dict()))                   // EMPTY_DICT
            case 0x64:                                                 // DICT
                let items = try popMark()
                guard items.count % 2 == 0 else { throw fail("DICT with an odd number of items") }
                let d = arena.dict()
                for i in stride(from: 0, to: items.count, by: 2) { d.items.append((items[i], items[i + 1])) }
                try push(.dict(d))
            case 0x73:                                                 // SETITEM
                let v = try pop(), k = try pop()
                guard case let .dict(d) = try top() else { throw fail("SETITEM on a non-dict at byte \(opPos)") }
                d.items.append((k, v))
            case 0x75:                                                 // SETITEMS
                let items = try popMark()
                guard items.count % 2 == 0 else { throw fail("SETITEMS with an odd number of items") }
                guard case let .dict(d) = try top() else { throw fail("SETITEMS on a non-dict at byte \(opPos)") }
                for i in stride(from: 0, to: items.count, by: 2) { d.items.append((items[i], items[i + 1])) }
            case 0x63:                                                 // GLOBAL
                let module = try line(), name = try line()
                try push(try global(module, name))
            case 0x93:                                                 // STACK_GLOBAL
                let n = try pop(), m = try pop()
                guard case let .string(name) = n,
                    case let .string(module) = m else { throw fail("STACK_GLOBAL needs two strings") }
                try push(try global(module, name))
            case 0x52:                                                 // REDUCE
                let args = try pop(), callable = try pop()
                try push(try reduce(callable, args, at: opPos))
            case 0x81:                                                 // NEWOBJ
                let args = try pop(), cls = try pop()
                try push(try reduce(cls, args, at: opPos))
            case 0x62:                                                 // BUILD
                _ = try pop()  // state: OrderedDict's _metadata, numpy dtype flags — data we do not need
                guard case .some = stack.last else { throw fail("BUILD on an empty stack") }
            case 0x51:                                                 // BINPERSID
                try push(try persistent(try pop()))
            case 0x71: try put(try u8())                               // BINPUT
            case 0x72: try put(Int(try le(4)))                         // LONG_BINPUT
            case 0x94: try put(memo.count)                             // MEMOIZE
            case 0x68: try push(try get(try u8()))                     // BINGET
            case 0x6A: try push(try get(Int(try le(4))))               // LONG_BINGET
            default:
                throw fail(String(format: "opcode 0x%02x at byte %d is not supported", op, opPos))
            }
        }
    }

    /// The only calls a pickle may make, each implemented here without running anything.
    private func reduce(_ callable: PickleValue, _ args: PickleValue, at opPos: Int) throws -> PickleValue {
        guard case let .global(name) = callable else { throw fail("REDUCE of a non-callable at byte \(opPos)") }
        guard case let .tuple(a) = args else { throw fail("REDUCE of \(name) without an argument tuple") }
        switch name {
        case "collections.OrderedDict":
            let d = arena.dict()
            if let first = a.first, case let .list(pairs) = first {
                for p in pairs.items {
                    guard case let .tuple(kv) = p, kv.count == 2 else { throw fail("OrderedDict item is not a pair") }
                    d.items.append((kv[0], kv[1]))
                }
            }
            return .dict(d)
        case "torch._utils._rebuild_tensor_v2":
            guard a.count >= 4, case .storage = a[0], case let .int(offset) = a[1],
                  case let .tuple(sizeV) = a[2], case let .tuple(strideV) = a[3] else {
                throw fail("_rebuild_tensor_v2 with unexpected arguments")
            }
            let size = try sizeV.map {
                v -> Int in guard case let .int(i) = v else { throw fail("tensor size is not an integer") }; return i }
            let strides = try strideV.map {
                v -> Int in guard case let .int(i) = v else {
                throw fail("tensor stride is not an integer") }; return i }
            return .tensor(try makeTensor(a[0], offset, size, strides))
        case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
            guard let t = a.first, case .tensor = t else { throw fail("\(name) without a tensor") }
            return t
        case "numpy.dtype":
            guard let f = a.first, case let .string(s) = f else { throw fail("numpy.dtype without a type string") }
            return .numpyDType(s)
        case "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar":
            guard a.count == 2,
                case let .numpyDType(t) = a[0] else { throw fail("numpy scalar with unexpected arguments") }
            let raw: [UInt8]
            switch a[1] {
            case let .bytes(b): raw = b
            case let .string(s): raw = Array(s.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) })
            default: throw fail("numpy scalar without bytes")
            }
            return numpyScalar(t, raw)
        case "_codecs.encode":
            // Protocol-2 pickles spell bytes as _codecs.encode(text, 'latin1').
            guard a.count == 2, case let .string(s) = a[0], case let .string(enc) = a[1],
                  enc == "latin1" || enc == "latin-1" else { throw fail("_codecs.encode only decodes latin1 text") }
            return .bytes(s.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) })
        default:
            throw fail("REDUCE of \(name) is not allowed")
        }
    }

    private func numpyScalar(_ type: String, _ raw: [UInt8]) -> PickleValue {
        var v: UInt64 = 0
        for (i, b) in raw.prefix(8).enumerated() { v |= UInt64(b) << UInt64(8 * i) }
        switch (type, raw.count) {
        case ("f8", 8): return .float(Double(bitPattern: v))
        case ("f4", 4): return .float(Double(Float(bitPattern: UInt32(v))))
        case ("i8", 8): return .int(Int(Int64(bitPattern: v)))
        case ("i4", 4): return .int(Int(Int32(bitPattern: UInt32(v))))
        case ("u8", 8): return .int(Int(truncatingIfNeeded: v))
        case ("b1", 1): return .bool(v != 0)
        default: return .none
        }
    }

    /// torch's persistent id: ('storage', storage_type, key, location, numel).
    private func persistent(_ pid: PickleValue) throws -> PickleValue {
        guard case let .tuple(t) = pid, t.count >= 5, case let .string(kind) = t[0], kind == "storage",
              case let .global(typeName) = t[1], case let .string(key) = t[2], case let .int(numel) = t[4] else {
            throw fail("persistent id is not a torch storage reference")
        }
        guard let dtype = Unpickler.storageTypes[typeName] else {
            throw fail("storage type \(typeName) is not supported") }
        guard numel >= 0 else { throw fail("storage \(key) has negative size \(numel)") }
        return .storage(dtype: dtype, key: key, count: numel)
    }
}
