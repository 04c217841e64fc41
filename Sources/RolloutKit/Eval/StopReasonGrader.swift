import Foundation
import GRDB

extension Warehouse {
    /// The `stop-reason` grader: a rollout passes when it completed and stopped for one of
    /// `passing` (by default: the user simulator ended the dialogue with `###STOP###`, or the
    /// agent answered in task mode); a failed rollout is graded as not passed. Grades only the
    /// latest attempts that have no grade of this grader version yet (incremental); returns
    /// (graded now, passed among them).
    @discardableResult
    public func gradeStopReason(run: String, passing: [String] = [StopReason.userStop.rawValue, StopReason.answer.rawValue],
                                version: Int = 1) throws -> (graded: Int, passed: Int) {
        try writer.write { db in
            guard let runID = try Int64.fetchOne(db, sql: "SELECT id FROM runs WHERE name = ?", arguments: [run]) else {
                throw EngineError("no run named \(run)")
            }
            let list = JSONValue.array(passing.map(JSONValue.string)).jsonText
            let pending = """
                SELECT r.id,
                       CASE WHEN r.status = 'completed' AND r.stop_reason IN (SELECT value FROM json_each(?1)) THEN 1 ELSE 0 END AS passed,
                       'stop_reason ' || coalesce(r.stop_reason, 'none') || ', status ' || r.status AS explanation
                FROM latest_rollouts r
                WHERE r.run_id = ?2 AND r.status IN ('completed', 'failed')
                  AND NOT EXISTS (SELECT 1 FROM grades g WHERE g.rollout_id = r.id AND g.grader = 'stop-reason' AND g.grader_version = ?3)
                """
            let passed = try Int.fetchOne(db, sql: "SELECT coalesce(sum(passed), 0) FROM (\(pending))",
                                          arguments: [list, runID, version]) ?? 0
            try db.execute(sql: """
                INSERT INTO grades(rollout_id, grader, grader_version, value, passed, explanation, created_at)
                SELECT id, 'stop-reason', ?3, passed, passed, explanation, ?4 FROM (\(pending))
                """, arguments: [list, runID, version, Timestamp.now()])
            return (db.changesCount, passed)
        }
    }
}
