"""The make machinery: data checks, stamps and the report index (:mod:`.build`) and running notebooks into
reports (:mod:`.reporting`)."""
