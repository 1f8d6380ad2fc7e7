"""meshplane in real containers, with podman: images, the compose mesh, and cleanup by label.

Used by ``make demo-containers`` (``python -m demo.containers``) and by tests/containers/.
This module is the face: it re-exports the names of the modules that hold them.

* :mod:`demo.containers.podman` -- podman's process helpers: :func:`run_cmd` (a process group
  of its own, killed whole on timeout or Ctrl-C), :func:`podman`, :func:`podman_out`,
  :func:`tool`, :func:`wait_for`, :func:`file_lock`, :class:`ContainerError`.
* :mod:`demo.containers.labels` -- :class:`Run`: one run's id and labels
  (``io.meshplane.project``, ``io.meshplane.run``, ``io.meshplane.pid``); everything a run
  creates carries them, and :meth:`Run.cleanup` removes containers, networks, volumes and
  images by the run label (never by name). Runs whose process is gone (killed -9) are swept the
  same way when the next run starts.
* :mod:`demo.containers.images` -- :func:`ensure_base_image`, :func:`build_image` (envoy/Dockerfile,
  offline, FROM :func:`ensure_deps_image`), :func:`build_postgres_image`: the images and their
  caches.
* :mod:`demo.containers.mesh` -- :class:`ComposeMesh` (compose/docker-compose.yaml under
  podman-compose, with the run's image, labels, host ports and a private copy of the model
  folder, so edits never touch the checkout), :class:`ReplicasMesh`
  (compose/docker-compose.replicas.yaml) and the traffic checks (:func:`upstream_of`,
  :func:`count_upstreams`, :func:`split_report`).

podman's settings live in compose/containers.conf (CONTAINERS_CONF): the ulimits that fit this
sandbox's hard limits and the runc runtime; the ulimits are also passed as flags.

Note: the function :func:`podman` is re-exported under the name of its module, so
``demo.containers.podman`` is the function (``from demo.containers.podman import ...`` still
reads the module).
"""

from __future__ import annotations

from demo.containers.podman import (COMPOSE_DIR, CONTAINERS_CONF, LOG, REPO, ContainerError, cache_dir, file_lock,
                                    free_port, podman, podman_env, podman_out, run_cmd, tool, tools_dir, wait_for)
from demo.containers.labels import CACHE_PROJECT, PID_KEY, PROJECT_KEY, RUN_KEY, Run, leftovers, remove_labelled
from demo.containers.images import (BASE_PACKAGES, BASE_RECIPE, BASE_SUITE, BUILD_BACKEND, CONTEXT_DIRS, CONTEXT_ENVOY,
                                    CONTEXT_FILES, DEPS_CONTAINERFILE, DOCKERFILE, ENVOY_SERVER, POSTGRES_DIR,
                                    POSTGRES_PACKAGES, POSTGRES_RECIPE, ULIMITS, base_image_tag, build_context,
                                    build_image, build_postgres_image, dependency_wheelhouse, ensure_base_image,
                                    ensure_deps_image, ensure_postgres_base_image, image_exists, image_python,
                                    postgres_base_tag)
from demo.containers.mesh import (AWS_DEMO_CREDENTIALS, COMPOSE_FILE, NODES, REPLICA_SERVICES, REPLICAS,
                                  REPLICAS_COMPOSE_FILE, SERVICES, ComposeMesh, ReplicasMesh, count_upstreams,
                                  split_report, upstream_of)
