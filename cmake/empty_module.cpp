// Placeholder translation unit for a module directory that has no sources yet.
