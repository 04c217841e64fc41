-- Tools per server, in list order. api_name differs from name where the original is not a
-- valid OpenAI tool name (it is mapped back on every call).
-- Parameters: :server (a server name; NULL = all), :domain (a single domain; NULL = all).
SELECT s.name AS server, t.ordinal, t.name, t.api_name,
       group_concat(DISTINCT d.key) AS domains, t.description
FROM tools t
JOIN servers s ON s.id = t.server_id
LEFT JOIN domain_servers ds ON ds.server_id = s.id
LEFT JOIN domains d ON d.id = ds.domain_id
WHERE (:server IS NULL OR s.name = :server)
  AND (:domain IS NULL OR d.key = :domain)
GROUP BY t.id
ORDER BY s.name, t.ordinal;
