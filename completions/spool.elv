
set edit:completion:arg-completer[spool] = { |@words|
    var index = (count $words)
    set index = (- $index 1)

    put (env _CLAP_IFS="\n" _CLAP_COMPLETE_INDEX=(to-string $index) SPOOL_COMPLETE="elvish" spool -- $@words) | to-lines
}

