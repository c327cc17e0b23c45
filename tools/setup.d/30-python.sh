# Python packages for test references (HF tokenizers, safetensors, numpy), pinned, into a
# project-local prefix .deps/python.
dw_py_stamp=".deps/python/.installed-$(sha256sum tests/py/requirements.txt | cut -c1-16)"
if [ ! -f "$dw_py_stamp" ]; then
    echo "setup: installing Python test packages into .deps/python"
    rm -rf .deps/python
    python3 -m pip install -q --disable-pip-version-check --target .deps/python -r tests/py/requirements.txt
    touch "$dw_py_stamp"
fi
