"""The study: the typed manifest (:mod:`.manifest`), what it points at (:mod:`.dataset`: subjects, recordings,
doses, tables, design), importing third-party data (:mod:`.importer`) and the derived tables analyses write
(:mod:`.derived`)."""
