/// Line diffs in the unified format `git apply` reads.
public enum UnifiedDiff {
    enum Op: Equatable { case equal, delete, insert }

    /// The edit script turning `a` into `b`: common prefix and suffix first, Myers' O(ND)
    /// algorithm on the rest. When the two differ in more than `maxEdits` lines the middle is
    /// replaced whole (still a correct diff, only not the shortest).
    static func script(_ a: [String], _ b: [String], maxEdits: Int = 4000) -> [Op] {
        var prefix = 0
        while prefix < a.count && prefix < b.count && a[prefix] == b[prefix] { prefix += 1 }
        var suffix = 0
        while suffix < a.count - prefix && suffix < b.count - prefix && a[a.count - 1 - suffix] == b[b.count - 1 - suffix] { suffix += 1 }
        let midA = Array(a[prefix..<(a.count - suffix)]), midB = Array(b[prefix..<(b.count - suffix)])
        var ops = [Op](repeating: .equal, count: prefix)
        ops += myers(midA, midB, maxEdits: maxEdits) ?? (Array(repeating: .delete, count: midA.count) + Array(repeating: .insert, count: midB.count))
        ops += [Op](repeating: .equal, count: suffix)
        return ops
    }

    /// Myers' shortest edit script, or nil beyond `maxEdits` edits. Keeps each round's frontier
    /// (2d + 1 entries), so memory is O(D²).
    static func myers(_ a: [String], _ b: [String], maxEdits: Int) -> [Op]? {
        let n = a.count, m = b.count
        if n == 0 { return Array(repeating: .insert, count: m) }
        if m == 0 { return Array(repeating: .delete, count: n) }
        // Lines as integers: equal lines compare in one step.
        var ids: [String: Int] = [:]
        var aa = [Int](); aa.reserveCapacity(n)
        for l in a { if let id = ids[l] { aa.append(id) } else { let id = ids.count; ids[l] = id; aa.append(id) } }
        var bb = [Int](); bb.reserveCapacity(m)
        for l in b { if let id = ids[l] { bb.append(id) } else { let id = ids.count; ids[l] = id; bb.append(id) } }
        let limit = min(n + m, maxEdits)
        var v = [Int](repeating: 0, count: 2 * limit + 3)
        let off = limit + 1
        var trace: [[Int]] = []
        var found = -1
        outer: for d in 0...limit {
            trace.append(Array(v[(off - d)...(off + d)]))
            for k in stride(from: -d, through: d, by: 2) {
                var px: Int
                if k == -d || (k != d && v[off + k - 1] < v[off + k + 1]) { px = v[off + k + 1] } else { px = v[off + k - 1] + 1 }
                var py = px - k
                while px < n && py < m && aa[px] == bb[py] { px += 1; py += 1 }
                v[off + k] = px
                if px >= n && py >= m { found = d; break outer }
            }
        }
        guard found >= 0 else { return nil }
        var ops: [Op] = []
        var cx = n, cy = m
        var d = found
        while d > 0 {
            let window = trace[d]
            func at(_ k: Int) -> Int { window[k + d] }
            let k = cx - cy
            let prevK = (k == -d || (k != d && at(k - 1) < at(k + 1))) ? k + 1 : k - 1
            let prevX = at(prevK), prevY = prevX - prevK
            while cx > prevX && cy > prevY { ops.append(.equal); cx -= 1; cy -= 1 }
            if prevK == k + 1 { ops.append(.insert); cy -= 1 } else { ops.append(.delete); cx -= 1 }
            cx = prevX
            cy = prevY
            d -= 1
        }
        while cx > 0 && cy > 0 { ops.append(.equal); cx -= 1; cy -= 1 }
        return ops.reversed()
    }

    /// A unified diff of one file in git's form, `diff --git a/P b/P`, with `context` lines of
    /// context. `old == nil` is a new file. Both sides are taken to end with a newline (the
    /// Agentless structure keeps lines without their ends), so no "\ No newline" markers
    /// appear. Returns "" when nothing changed.
    public static func file(path: String, old: [String]?, new: [String], context: Int = 3) -> String {
        let a = old ?? []
        if let old, old == new { return "" }
        let ops = script(a, new)
        var out = "diff --git a/\(path) b/\(path)\n"
        if old == nil {
            out += "new file mode 100644\n--- /dev/null\n+++ b/\(path)\n"
        } else {
            out += "--- a/\(path)\n+++ b/\(path)\n"
        }
        // Positions of every op in the old and new files.
        var changes: [Int] = []
        for (i, op) in ops.enumerated() where op != .equal { changes.append(i) }
        guard !changes.isEmpty else { return "" }
        var hunks: [(Int, Int)] = []  // op index ranges, inclusive
        var start = max(0, changes[0] - context), end = min(ops.count - 1, changes[0] + context)
        for c in changes.dropFirst() {
            if c - context <= end + 1 { end = min(ops.count - 1, c + context) } else {
                hunks.append((start, end))
                start = max(0, c - context)
                end = min(ops.count - 1, c + context)
            }
        }
        hunks.append((start, end))
        var oldLine = [Int](repeating: 0, count: ops.count + 1), newLine = [Int](repeating: 0, count: ops.count + 1)
        for (i, op) in ops.enumerated() {
            oldLine[i + 1] = oldLine[i] + (op == .insert ? 0 : 1)
            newLine[i + 1] = newLine[i] + (op == .delete ? 0 : 1)
        }
        for (s, e) in hunks {
            var body = ""
            var oldCount = 0, newCount = 0
            for i in s...e {
                switch ops[i] {
                case .equal:
                    body += " " + a[oldLine[i]] + "\n"; oldCount += 1; newCount += 1
                case .delete:
                    body += "-" + a[oldLine[i]] + "\n"; oldCount += 1
                case .insert:
                    body += "+" + new[newLine[i]] + "\n"; newCount += 1
                }
            }
            func range(_ first: Int, _ count: Int) -> String {
                count == 1 ? "\(first + 1)" : "\(count == 0 ? first : first + 1),\(count)"
            }
            out += "@@ -\(range(oldLine[s], oldCount)) +\(range(newLine[s], newCount)) @@\n" + body
        }
        return out
    }
}
