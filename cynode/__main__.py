from cynode.cli.main import main

main()
