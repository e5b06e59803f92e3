SELECT 'it''s $1', "a""b" /* $2 */ -- $3
FROM t WHERE x = $1 AND max (y) IN (SELECT count(*) FROM u JOIN v ON u.a=v.a GROUP BY 1 ORDER BY 2) UNION SELECT `q` FROM w WHERE z LIKE $2