-- Domains and cross-domain combinations (members sorted, joined with '+', so file names
-- A_B and B_A are the same key), with what each has.
-- policy: 'own' = a policy file for exactly this key; 'members' = a combination without its own
--         policy whose members all have one; 'missing' otherwise.
-- tools: tools offered (the union over member domains' servers).
-- Parameters: :cross (1 = combinations only), :min_domains (minimum members),
--             :require_policy (1 = only keys with their own policy). NULL = no filter.
WITH keyed AS (
    SELECT d.id, d.key, d.size, d.policy IS NOT NULL AS has_policy,
           (SELECT count(*) FROM domains m
             WHERE m.size = 1 AND m.policy IS NOT NULL
               AND instr('+' || d.key || '+', '+' || m.key || '+') > 0) AS members_with_policy
    FROM domains d
)
SELECT k.key AS domain, k.size AS members,
       CASE WHEN k.has_policy THEN 'own'
            WHEN k.size > 1 AND k.members_with_policy = k.size THEN 'members'
            ELSE 'missing' END AS policy,
       (SELECT count(DISTINCT t.id) FROM domains m
          JOIN domain_servers ds ON ds.domain_id = m.id
          JOIN tools t ON t.server_id = ds.server_id
         WHERE m.size = 1 AND instr('+' || k.key || '+', '+' || m.key || '+') > 0) AS tools,
       (SELECT count(*) FROM tasks t WHERE t.domain_id = k.id) AS tasks
FROM keyed k
WHERE (coalesce(:cross, 0) = 0 OR k.size > 1)
  AND (:min_domains IS NULL OR k.size >= :min_domains)
  AND (coalesce(:require_policy, 0) = 0 OR k.has_policy)
ORDER BY k.size, k.key;
