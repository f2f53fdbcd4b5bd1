ALTER TABLE manual_entries ADD COLUMN author_role TEXT;
