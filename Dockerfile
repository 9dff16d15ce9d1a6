# The test image of scripts/docker-test, for machines that can pull from a registry:
#   docker build -t minicontainer-test .          (or: scripts/docker-test --dockerfile)
#   docker run --rm --privileged --init --network none -v "$PWD:/src:ro" minicontainer-test \
#       python -m pytest -p no:cacheprovider -m "root or cgroup1 or cgroup2 or docker" tests/
# Without a registry, scripts/docker/build-image makes an equivalent image from
# Debian packages: the same scripts/docker/packages.txt, the same pip requirements
# (pyproject.toml's dependencies and test extra, listed by requirements.py).
# The checkout is not copied in: it is mounted at run time, read-only.
FROM python:3.11-slim

COPY scripts/docker/packages.txt scripts/docker/requirements.py pyproject.toml /tmp/build/
RUN apt-get update \
 && sed 's/#.*//' /tmp/build/packages.txt | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/*
RUN python /tmp/build/requirements.py /tmp/build/pyproject.toml >/tmp/build/requirements.txt \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /tmp/build/requirements.txt \
 && printf '#!/bin/sh\nexec /opt/venv/bin/python -m minicontainer "$@"\n' >/usr/local/bin/minicontainer \
 && chmod 755 /usr/local/bin/minicontainer \
 && rm -rf /tmp/build

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/src/src \
    PYTHONDONTWRITEBYTECODE=1 \
    MINICONTAINER_IN_DOCKER=1
WORKDIR /src
CMD ["/bin/bash"]
