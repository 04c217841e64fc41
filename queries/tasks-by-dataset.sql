-- Tasks per dataset and domain (a cross-domain combination is one key, e.g. 'Library+Transit').
-- Parameters: :dataset (a dataset name; NULL = all).
SELECT d.name AS dataset, d.kind, coalesce(dm.key, '') AS domain, count(t.id) AS tasks
FROM datasets d
LEFT JOIN tasks t ON t.dataset_id = d.id
LEFT JOIN domains dm ON dm.id = t.domain_id
WHERE :dataset IS NULL OR d.name = :dataset
GROUP BY d.id, dm.id
ORDER BY d.name, domain;
