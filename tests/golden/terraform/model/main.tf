# A small mesh as Terraform (aws_appmesh_*): mesh, two nodes and a client, a router with a weighted route, a service.
# show.json beside model/ is the same mesh as `terraform show -json` prints it.
variable "mesh_name" {
  type    = string
  default = "shop"
}
variable "red_weight" {
  type = number
  default = 90
}
locals {
  ns = "shop.local"
}
resource "aws_appmesh_mesh" "main" {
  name = var.mesh_name
  spec {
    egress_filter {
      type = "DROP_ALL"
    }
  }
}
resource "aws_appmesh_virtual_node" "red" {
  name      = "red"
  mesh_name = aws_appmesh_mesh.main.id
  spec {
    listener {
      port_mapping {
        port     = 8080
        protocol = "http"
      }
      health_check {
        protocol            = "http"
        path                = "/ping"
        healthy_threshold   = 2
        unhealthy_threshold = 2
        timeout_millis      = 2000
        interval_millis     = 5000
      }
    }
    service_discovery {
      dns {
        hostname = "red.${local.ns}"
      }
    }
  }
}
resource "aws_appmesh_virtual_node" "blue" {
  name      = "blue"
  mesh_name = aws_appmesh_mesh.main.name
  spec {
    listener {
      port_mapping {
        port     = 8080
        protocol = "http"
      }
    }
    service_discovery {
      dns {
        hostname = "blue.${local.ns}"
      }
    }
  }
}
resource "aws_appmesh_virtual_node" "client" {
  name      = "client"
  mesh_name = aws_appmesh_mesh.main.id
  spec {
    backend {
      virtual_service {
        virtual_service_name = aws_appmesh_virtual_service.color.name
      }
    }
    listener {
      port_mapping {
        port     = 8080
        protocol = "http"
      }
    }
    service_discovery {
      dns {
        hostname = "client.${local.ns}"
      }
    }
  }
}
resource "aws_appmesh_virtual_router" "color" {
  name      = "color"
  mesh_name = aws_appmesh_mesh.main.id
  spec {
    listener {
      port_mapping {
        port     = 8080
        protocol = "http"
      }
    }
  }
}
resource "aws_appmesh_route" "color" {
  name                = "color-route"
  mesh_name           = aws_appmesh_mesh.main.id
  virtual_router_name = aws_appmesh_virtual_router.color.name
  spec {
    http_route {
      match {
        prefix = "/"
        header {
          name = "x-color"
          match {
            exact = "blue"
          }
        }
      }
      retry_policy {
        http_retry_events = ["server-error", "gateway-error"]
        max_retries       = 2
        per_retry_timeout {
          unit  = "ms"
          value = 500
        }
      }
      action {
        weighted_target {
          virtual_node = aws_appmesh_virtual_node.red.name
          weight       = var.red_weight
        }
        weighted_target {
          virtual_node = aws_appmesh_virtual_node.blue.name
          weight       = 10
        }
      }
    }
  }
}
resource "aws_appmesh_virtual_service" "color" {
  name      = "color.${local.ns}"
  mesh_name = aws_appmesh_mesh.main.id
  spec {
    provider {
      virtual_router {
        virtual_router_name = aws_appmesh_virtual_router.color.name
      }
    }
  }
}
