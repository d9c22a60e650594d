std = "max"
max_line_length = 120
files["spec"] = { std = "+busted", ignore = { "512" } }   -- loops that break on purpose
exclude_files = { "build" }
