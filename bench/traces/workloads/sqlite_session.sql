-- The sqlite3 session recorded into bench/traces/sqlite3-session.rep: a
-- table, an index, inserts through a recursive CTE, updates, queries with
-- grouping and joins, deletes.
CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, category INTEGER, price REAL, note TEXT);
CREATE INDEX items_category ON items(category);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
INSERT INTO items(name, category, price, note)
SELECT 'item' || i, i % 97, (i * 7919 % 10000) / 100.0, substr(hex(randomblob(40)), 1, i % 80) FROM n;
UPDATE items SET price = price * 1.1 WHERE category % 3 = 0;
SELECT category, count(*), round(avg(price), 2) FROM items GROUP BY category ORDER BY 3 DESC LIMIT 5;
CREATE TABLE cats AS SELECT DISTINCT category AS id, 'cat' || category AS label FROM items;
SELECT c.label, sum(i.price) FROM items i JOIN cats c ON c.id = i.category GROUP BY c.label ORDER BY 2 DESC LIMIT 3;
DELETE FROM items WHERE id % 5 = 0;
SELECT count(*), max(length(note)) FROM items;
