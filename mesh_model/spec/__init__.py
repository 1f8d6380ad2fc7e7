"""What the model is: typed App Mesh specs (``shapes``), the resource envelope and the loaded
``MeshModel`` (``model``), and the route types (``route_types``). Import from those modules."""
